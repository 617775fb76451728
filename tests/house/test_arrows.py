"""The house's arrows (docs/ARCHITECTURE.md): host_tools -> firmware -> kernels, never back; no torch on the board;
in host_tools, torch only in the train wing.

Each package is imported in a fresh interpreter and what it pulled in is read from ``sys.modules``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: package -> modules it must never import (directly or through anything it imports)
FORBIDDEN = {
    "wearface.kernels": ("torch", "cv2", "serial", "wearface.firmware", "wearface.host_tools"),
    "wearface.firmware": ("torch", "wearface.host_tools"),
    # the host's wings: torch lives in train/ only; commands/ sits on top of the wings, never under one
    "wearface.host_tools.bundle": ("torch", "wearface.host_tools.train", "wearface.host_tools.device",
                                   "wearface.host_tools.commands"),
    "wearface.host_tools.device": ("torch", "wearface.host_tools.train", "wearface.host_tools.commands"),
}


def imported_by(package: str, extra: str = "") -> set[str]:
    """Top-level and package module names in ``sys.modules`` after ``import package`` (+ ``extra`` code)."""
    code = (f"import sys, json, importlib, pkgutil\nimport {package} as p\n"
            f"for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
            f"    importlib.import_module(m.name)\n{extra}\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_board_packages_import_nothing_they_must_not(package):
    loaded = imported_by(package)
    bad = [m for m in FORBIDDEN[package] if m in loaded]
    assert not bad, f"{package} (every module of it) imported {bad}"


def test_the_check_sees_a_forbidden_import():
    """The same check catches torch when something on the board side imports it (here: injected)."""
    loaded = imported_by("wearface.kernels", extra="import torch")
    assert "torch" in loaded
