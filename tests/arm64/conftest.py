"""The arm64 userland for these tests: prepared once per session (cached across runs), two emulated CPUs.

Everything under ``tests/arm64`` is marked ``arm64``.  Tests skip, with the install command, only when
``qemu-aarch64-static`` is absent; a userland that fails to build is an error, not a skip.
The folder is ``$WEARFACE_ARM64_USERLAND`` or ``~/.cache/wearface/arm64`` (reused when its stamp is current).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

import pytest

from wearface.host_tools.device import emulate

#: (qemu CPU model, has the ARMv8.2 dot product): the Cortex-A53 board and the A55-class (dotprod) board
EMULATED_CPUS = (("cortex-a53", False), ("cortex-a76", True))
REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.arm64)


@pytest.fixture(scope="session")
def userland() -> emulate.Userland:
    """The prepared arm64 userland; skips with the install command when qemu-user-static is missing."""
    if shutil.which(emulate.QEMU_BINARY) is None:
        pytest.skip(f"{emulate.QEMU_BINARY} is not installed: {emulate.QEMU_INSTALL_HINT}")
    return emulate.prepare_userland(emulate.default_userland_dir())


@pytest.fixture(scope="session", params=[cpu for cpu, _ in EMULATED_CPUS])
def qemu_cpu(request) -> str:
    return request.param


def has_dotprod(qemu_cpu: str) -> bool:
    return dict(EMULATED_CPUS)[qemu_cpu]


class Emulated:
    """Runs code in the emulated python on one CPU model, from the repository root."""

    def __init__(self, userland: emulate.Userland, qemu_cpu: str):
        self.userland, self.qemu_cpu = userland, qemu_cpu

    def run(self, args, timeout_s: float = 300, check: bool = True, **popen) -> subprocess.CompletedProcess:
        popen.setdefault("cwd", REPO)
        return emulate.run_python(self.userland, list(args), qemu_cpu=self.qemu_cpu, timeout_s=timeout_s,
                                  check=check, **popen)

    def json(self, code: str, *argv: str, timeout_s: float = 300) -> object:
        """Run ``code`` (which prints one JSON document last) and return that document."""
        out = self.run(["-c", code, *argv], timeout_s=timeout_s).stdout
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def emulated(userland, qemu_cpu) -> Emulated:
    return Emulated(userland, qemu_cpu)


class EmulatedCpus:
    """Runs one check on every emulated CPU *at once* (one process per CPU: the two cores halve the wall time).

    Numba's cache (in the userland) is per CPU model, so checks run in sequence reuse what earlier ones compiled.
    """

    def __init__(self, userland: emulate.Userland, cpus: Sequence[str]):
        self.userland, self.cpus = userland, tuple(cpus)

    def run(self, args_for: Callable[[str], list], timeout_s: float = 600, env: dict | None = None) -> dict:
        """{cpu: CompletedProcess} of the emulated python with ``args_for(cpu)``, from the repository root;
        output captured (stdout and stderr apart)."""
        procs = {}
        for cpu in self.cpus:
            procs[cpu] = subprocess.Popen([str(self.userland.launcher), *map(str, args_for(cpu))], cwd=REPO,
                                          env=self.userland.env(cpu, base=env), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout_s
        done = {}
        try:
            for cpu, proc in procs.items():
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                done[cpu] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return done


def describe_failure(cpu: str, done: subprocess.CompletedProcess, lines: int = 40) -> str:
    text = "\n".join((done.stdout + "\n" + done.stderr).strip().splitlines()[-lines:])
    return f"{cpu}: exit status {done.returncode}\n{text}"


@pytest.fixture(scope="session")
def all_cpus(userland) -> EmulatedCpus:
    return EmulatedCpus(userland, [cpu for cpu, _ in EMULATED_CPUS])
