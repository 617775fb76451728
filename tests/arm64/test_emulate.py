"""host_tools/device/emulate.py and ``wearface board``: the userland's recipe and launcher, its errors, re-entry of
subprocess children into qemu, and the ``board emulate`` verb serving a real pty."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wearface.firmware import protocol as P
from wearface.firmware.board import load_board
from wearface.host_tools.cli import main as cli_main
from wearface.host_tools.device import emulate
from wearface.host_tools.device.link import Link
from wearface.host_tools.errors import NotAarch64BoardError, QemuMissingError, UserlandBuildError

from .conftest import REPO


def test_missing_qemu_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(emulate.shutil, "which", lambda name: None)
    with pytest.raises(QemuMissingError, match=r"qemu-aarch64-static not found.*apt-get install -y qemu-user-static"):
        emulate.prepare_userland("/nonexistent/never-created")


def test_boards_name_their_qemu_cpu_and_the_virtual_board_is_refused():
    assert emulate.board_qemu_cpu(load_board(REPO / "boards" / "rpi-zero2w.toml")) == "cortex-a53"
    assert emulate.board_qemu_cpu(load_board(REPO / "boards" / "a55-dotprod.toml")) == "cortex-a76"
    with pytest.raises(NotAarch64BoardError, match=r"virtual.toml: cpu.arch is 'host', expected 'aarch64'"):
        emulate.board_qemu_cpu(load_board(REPO / "boards" / "virtual.toml"))


def test_cli_refuses_a_non_aarch64_board_with_one_line(capsys):
    assert cli_main(["board", "emulate", str(REPO / "boards" / "virtual.toml")]) == NotAarch64BoardError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 'aarch64'" in err[0], err


def test_wheel_tags_cover_every_manylinux_glibc_up_to_the_sysroots():
    args = emulate.wheel_platform_args((2, 36))
    platforms = {args[i + 1] for i, a in enumerate(args) if a == "--platform"}
    assert {"manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64", "manylinux_2_36_aarch64",
            "any"} <= platforms
    assert "manylinux_2_37_aarch64" not in platforms
    assert args[args.index("--python-version") + 1] == emulate.PYTHON_VERSION and "--only-binary=:all:" in args


def test_requirements_are_pinned_to_this_hosts_versions():
    from importlib import metadata

    pins = emulate.pinned_requirements()
    for name in ("numpy", "numba", "llvmlite", "opencv-python-headless", "pytest"):
        assert f"{name}=={metadata.version(name)}" in pins, pins


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
       st.sampled_from(["", ">=2,<3", "==1.0", " >= 4.8", "[extra]>=1"]))
def test_requirement_name_is_the_leading_project_name(name, spec):
    assert emulate._requirement_name(name + spec) == name


@given(st.text(max_size=30))
def test_requirement_name_refuses_text_without_a_name(text):
    try:
        name = emulate._requirement_name(text)
    except UserlandBuildError as exc:
        assert "cannot read a package name" in str(exc)
    else:
        assert name and text.lstrip().startswith(name)


@given(st.integers(2, 3), st.integers(0, 99), st.sampled_from("-.+~"),
       st.text(alphabet="0123456789.+~-abcdefghijklmnopqrstuvwxyz", max_size=12))
def test_glibc_version_is_read_from_the_libc6_deb_name(major, minor, separator, rest):
    debs = [Path("zlib1g_1.2.13_arm64.deb"), Path(f"libc6_{major}.{minor}{separator}{rest}_arm64.deb")]
    assert emulate._glibc_version(debs) == (major, minor)


def test_glibc_version_without_libc6_is_an_error():
    with pytest.raises(UserlandBuildError, match="no libc6"):
        emulate._glibc_version([Path("libc6-dev_2.36_arm64.deb.txt"), Path("python3.11_3.11.2_arm64.deb")])


def test_project_sync_copies_changes_and_removes_stale_files(tmp_path, monkeypatch):
    source = tmp_path / "src" / "kernels"
    (source / "sub").mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "sub" / "a.py").write_text("A = 1\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.pyc").write_bytes(b"junk")
    monkeypatch.setattr(emulate, "_project_sources", lambda: {"kernels": source})
    userland = emulate.Userland(tmp_path / "userland")
    assert emulate.sync_project(userland) == 2
    target = userland.project / "wearface" / "kernels"
    assert (target / "sub" / "a.py").read_text() == "A = 1\n" and not (target / "__pycache__").exists()
    assert emulate.sync_project(userland) == 0  # unchanged: nothing copied (mtimes kept, Numba's cache stays valid)
    (source / "sub" / "a.py").write_text("A = 22\n")
    (source / "__init__.py").unlink()
    assert emulate.sync_project(userland) == 2
    assert (target / "sub" / "a.py").read_text() == "A = 22\n" and not (target / "__init__.py").exists()


def test_prepared_userland_is_reused_and_its_launcher_sets_the_emulation(userland):
    stamp = userland.read_stamp()
    again = emulate.prepare_userland(userland.folder)
    assert again.read_stamp()["built_at"] == stamp["built_at"]  # the stamp matched: nothing rebuilt
    assert stamp["recipe"] == emulate.recipe() and stamp["qemu"].startswith("qemu-aarch64")
    text = userland.launcher.read_text()
    for variable in ("QEMU_LD_PREFIX", "PYTHONHOME", "PYTHONPATH", "QEMU_CPU", "NUMBA_CPU_NAME", "NUMBA_CACHE_DIR"):
        assert f"export {variable}=" in text
    assert " -0 " in text and os.access(userland.launcher, os.X_OK)


# the pool's task is a stdlib function: a function defined in a ``-c`` script cannot be unpickled by a spawned child
CHILDREN = """
import json, multiprocessing, platform, subprocess, sys
child = subprocess.run([sys.executable, "-c", "import platform; print(platform.machine())"],
                       capture_output=True, text=True, check=True).stdout.strip()
with multiprocessing.get_context("spawn").Pool(1) as pool:
    spawned = pool.apply(platform.machine)
print(json.dumps({"executable": sys.executable, "child": child, "spawned": spawned}))
"""


def test_subprocess_and_spawned_children_reenter_qemu(emulated):
    report = emulated.json(CHILDREN, timeout_s=120)
    assert report == {"executable": str(emulated.userland.launcher), "child": "aarch64", "spawned": "aarch64"}


def test_board_emulate_serves_the_firmware_on_a_pty_until_interrupted(userland, tmp_path):
    env = dict(os.environ, WEARFACE_ARM64_USERLAND=str(userland.folder))
    proc = subprocess.Popen([sys.executable, "-m", "wearface.host_tools", "board", "emulate",
                             str(REPO / "boards" / "rpi-zero2w.toml"), "--flash", str(tmp_path / "flash")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"board emulate ended early: {proc.stderr.read()}"
            if line.startswith("serial port: "):
                port = line.split()[2]
        assert port == str(tmp_path / "flash" / "tty")
        with Link(port, open_timeout_s=30) as link:
            info = link.request(P.Opcode.INFO, timeout_s=300)
        assert info["board"] == "rpi-zero2w" and info["state"] == "recovery" and info["cpu"]["arch"] == "aarch64"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    console = (tmp_path / "flash" / "console.log").read_text()
    assert "wearface firmware: board rpi-zero2w" in console
