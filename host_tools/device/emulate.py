"""The arm64 userland: an aarch64 Debian Python with the project's wheels, run by ``qemu-aarch64-static``.

No chroot, no binfmt_misc, no root on the host's dpkg.  :func:`prepare_userland` builds, once, in a
folder (default ``~/.cache/wearface/arm64``; ``WEARFACE_ARM64_USERLAND`` or ``--userland`` name another):

- ``sysroot/``: the arm64 ``.deb`` files of ``python3.11`` and its library closure (plus ``libstdc++6`` and
  ``libgomp1``, which llvmlite and numba need), fetched by the host's apt with a private configuration
  (``APT_CONFIG``: architecture arm64, an *empty* dpkg status so apt resolves the whole closure, the host's
  Debian sources and keyring, ``--download-only``) and unpacked with ``dpkg-deb -x``.  The host's dpkg
  state is never touched.
- ``site-packages/``: aarch64 wheels of the project's dependencies (pinned to the versions installed on
  this host, so x86 and arm64 run the same numpy and numba), from the host's pip with explicit
  ``--platform manylinux_*_aarch64`` tags (pip does not infer the older glibc tags), ``pip install --target``.
- ``project/wearface/``: a copy of this project's pure-Python packages, re-synced on every call.
- ``bin/python3``: the launcher.  It sets ``QEMU_LD_PREFIX``, ``PYTHONHOME``, ``PYTHONPATH``,
  ``QEMU_CPU``, ``NUMBA_CPU_NAME`` (qemu shows the host's ``/proc/cpuinfo``, so llvmlite would detect a
  featureless ``generic`` CPU) and ``NUMBA_CACHE_DIR``, then ``exec qemu-aarch64-static -0 <launcher>
  python3.11``: with ``-0`` the emulated ``sys.executable`` is the launcher, so subprocess and
  multiprocessing children re-enter qemu instead of failing with ``Exec format error``.
- the standard library precompiled (Debian ships no ``.pyc``: ``import numba`` is ~2x faster with them).
- ``READY.json``: the stamp (recipe, timings, size).  A folder whose stamp matches the recipe is reused.

Emulation proves correctness and memory, not speed (Numba code runs ~5x slower than native, BLAS far
slower).  Must not import torch, OpenCV or numba (it runs on the x86 host and only starts the emulated one).
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import NotAarch64BoardError, QemuMissingError, UserlandBuildError

#: bump when the folder layout or the launcher changes: a stamp with another value is rebuilt
LAYOUT_VERSION = 1
QEMU_BINARY = "qemu-aarch64-static"
QEMU_INSTALL_HINT = "install it with: sudo apt-get install -y qemu-user-static (Debian/Ubuntu package qemu-user-static)"
#: the emulated interpreter: Debian 12's python3.11 (cp311 wheels)
PYTHON_VERSION = "3.11"
#: Debian packages unpacked into the sysroot; apt adds their whole dependency closure
DEBIAN_PACKAGES = (f"python{PYTHON_VERSION}", "libstdc++6", "libgomp1")
#: what runs on the board (setup.cfg install_requires) plus the "test" extra (pytest runs under emulation)
EXTRAS_INSTALLED = ("test",)
#: used when the project's own metadata is not installed (a bare checkout)
FALLBACK_REQUIREMENTS = ("numpy>=2,<3", "numba>=0.60", "opencv-python-headless>=4.8,<5", "pyserial>=3.5",
                         "cryptography>=42", "pytest>=8", "hypothesis>=6.100")
#: pinned with the rest: the emulated numba gets the host's llvmlite; matplotlib ships the portrait that the
#: firmware's "synthetic" camera films (firmware/scene.py finds it on disk), so an emulated board can run the loop
ALSO_PINNED = ("llvmlite", "matplotlib")
#: the project's packages copied into the userland (wearface is a namespace package)
PROJECT_PACKAGES = ("kernels", "firmware", "host_tools")
DEFAULT_QEMU_CPU = "cortex-a53"
#: qemu-user's default CPU, and how it is named for Numba when a board gives none
STAMP_NAME = "READY.json"

#: progress of the userland build; ``wearface board prepare|emulate`` prints it on stderr (``host_tools/cli.py``)
_log = logging.getLogger(__name__)



def default_userland_dir() -> Path:
    """``$WEARFACE_ARM64_USERLAND``, else ``$XDG_CACHE_HOME/wearface/arm64`` (``~/.cache/wearface/arm64``)."""
    named = os.environ.get("WEARFACE_ARM64_USERLAND")
    if named:
        return Path(named).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "wearface" / "arm64"


@dataclass(frozen=True)
class Userland:
    """A prepared (or to-be-prepared) arm64 userland folder and the paths inside it."""

    folder: Path

    @property
    def sysroot(self) -> Path:
        return self.folder / "sysroot"

    @property
    def site_packages(self) -> Path:
        return self.folder / "site-packages"

    @property
    def project(self) -> Path:
        return self.folder / "project"

    @property
    def launcher(self) -> Path:
        """The emulated ``python3``: run it like any interpreter (``QEMU_CPU`` picks the CPU model)."""
        return self.folder / "bin" / "python3"

    @property
    def stamp(self) -> Path:
        return self.folder / STAMP_NAME

    @property
    def downloads(self) -> Path:
        return self.folder / "downloads"

    @property
    def interpreter(self) -> Path:
        return self.sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}"

    def env(self, qemu_cpu: str = DEFAULT_QEMU_CPU, numba_cpu: str | None = None,
            base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the launcher: ``base`` (default ``os.environ``) with the CPU model set.

        ``numba_cpu`` (LLVM's name; default ``qemu_cpu``) is the target Numba compiles for.
        """
        env = dict(os.environ if base is None else base)
        env["QEMU_CPU"] = qemu_cpu
        env["NUMBA_CPU_NAME"] = numba_cpu or qemu_cpu
        env.pop("NUMBA_CPU_FEATURES", None)  # a host (x86) feature string would be nonsense here
        return env

    def read_stamp(self) -> dict | None:
        try:
            return json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return None


# ------------------------------------------------------------------------------------------ checks

def find_qemu() -> str:
    """Path of ``qemu-aarch64-static``; :class:`QemuMissingError` saying how to install it otherwise."""
    path = shutil.which(QEMU_BINARY)
    if path is None:
        raise QemuMissingError(f"{QEMU_BINARY} not found on PATH: {QEMU_INSTALL_HINT}")
    return path


def qemu_version(qemu: str | None = None) -> str:
    """First line of ``qemu-aarch64-static --version`` (e.g. ``qemu-aarch64 version 7.2.22 (Debian ...)``)."""
    out = subprocess.run([qemu or find_qemu(), "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.splitlines() or ["unknown"])[0]


def board_qemu_cpu(board) -> str:
    """The qemu CPU model that emulates ``board`` (a ``wearface.firmware.board.Board``).

    Raises :class:`NotAarch64BoardError` when the board is not aarch64 (the virtual board, 32-bit ARM).
    """
    arch = getattr(board.cpu, "arch", "")
    source = getattr(board, "path", "") or getattr(board, "name", "board")
    if arch != "aarch64":
        raise NotAarch64BoardError(
            f"{source}: cpu.arch is {arch!r}, expected 'aarch64' (qemu-aarch64 emulates aarch64 boards only; "
            f"run a 'host' board natively with python -m wearface.firmware)")
    return getattr(getattr(board, "emulation", None), "qemu_cpu", "") or DEFAULT_QEMU_CPU


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserlandBuildError(f"{name} not found on PATH: {why}")
    return path


# ------------------------------------------------------------------------------------------ recipe

def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise UserlandBuildError(f"cannot read a package name from requirement {requirement!r}")
    return match.group(1)


def _pin(name: str, fallback: str) -> str:
    """``name==<host version>`` when installed on this host, else the requirement as declared."""
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return fallback


def pinned_requirements() -> list[str]:
    """The wheels the userland gets: the project's runtime + test requirements, pinned to this host's versions."""
    try:
        declared = metadata.requires("wearface") or []
    except metadata.PackageNotFoundError:
        declared = list(FALLBACK_REQUIREMENTS)
    wanted = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", marker)
        if marker.strip() and not (extra and extra.group(1) in EXTRAS_INSTALLED):
            continue
        wanted.append(spec.strip())
    wanted += list(ALSO_PINNED)
    pins, seen = [], set()
    for spec in wanted:
        name = _requirement_name(spec)
        key = name.lower().replace("_", "-")
        if key not in seen:
            seen.add(key)
            pins.append(_pin(name, spec))
    return pins


def recipe() -> dict:
    """What a userland is made of; a stamp with another recipe is rebuilt."""
    return {"layout": LAYOUT_VERSION, "python": PYTHON_VERSION, "debian_packages": list(DEBIAN_PACKAGES),
            "requirements": pinned_requirements()}


def is_ready(userland: Userland) -> bool:
    stamp = userland.read_stamp()
    return bool(stamp) and stamp.get("recipe") == recipe() and userland.interpreter.is_file()


# ------------------------------------------------------------------------------------------ building

def _run_tool(command: Sequence[str], what: str, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run a host tool; :class:`UserlandBuildError` with the tail of its output when it fails."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, env=env, cwd=cwd, check=False)
    except OSError as exc:
        raise UserlandBuildError(f"{what}: cannot run {command[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise UserlandBuildError(f"{what} failed (exit {done.returncode}): {shlex.join(command)}\n{tail}")
    return done.stdout


def _apt_config(folder: Path, sources: Path | None) -> Path:
    """A private apt configuration for arm64 with an empty dpkg status; returns the config file."""
    apt = folder / "apt"
    for sub in ("lists/partial", "archives/partial", "cache"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").write_text("")
    lines = [
        'APT::Architecture "arm64";',
        'APT::Architectures { "arm64"; };',
        'APT::Install-Recommends "false";',
        'APT::Install-Suggests "false";',
        f'Dir::State "{apt}";',
        f'Dir::State::lists "{apt / "lists"}";',
        f'Dir::State::status "{apt / "status"}";',
        f'Dir::Cache "{apt / "cache"}";',
        f'Dir::Cache::archives "{apt / "archives"}";',
        'Debug::NoLocking "true";',
        'Acquire::Languages "none";',
    ]
    if sources is not None:  # another distribution's arm64 mirror (e.g. ports.ubuntu.com)
        lines += [f'Dir::Etc::sourcelist "{Path(sources).resolve()}";', f'Dir::Etc::sourceparts "{apt / "none"}";']
    config = apt / "apt.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def _fetch_debs(folder: Path, sources: Path | None) -> list[Path]:
    """Download the arm64 .debs of DEBIAN_PACKAGES and their closure; returns the .deb files."""
    apt_get = _require_tool("apt-get", "the arm64 python3.11 comes from Debian's archive through apt "
                                       "(a Debian 12 or derived host; elsewhere pass an arm64 sources file)")
    config = _apt_config(folder, sources)
    env = dict(os.environ, APT_CONFIG=str(config), DEBIAN_FRONTEND="noninteractive")
    _run_tool([apt_get, "-q", "update"], "apt-get update (arm64 indices)", env=env)
    _run_tool([apt_get, "-q", "-y", "--download-only", "install", *DEBIAN_PACKAGES],
              "apt-get --download-only install", env=env)
    debs = sorted((folder / "apt" / "archives").glob("*.deb"))
    if not debs:
        raise UserlandBuildError(f"apt downloaded no .deb into {folder / 'apt' / 'archives'}")
    return debs


def _glibc_version(debs: Sequence[Path]) -> tuple[int, int]:
    """(major, minor) of the libc6 .deb, which bounds the manylinux tags the wheels may carry."""
    for deb in debs:
        match = re.match(r"libc6_(\d+)\.(\d+)", deb.name)
        if match:
            return int(match.group(1)), int(match.group(2))
    raise UserlandBuildError(f"no libc6_*.deb among {len(debs)} downloaded packages: cannot tell the glibc version")


def wheel_platform_args(glibc: tuple[int, int]) -> list[str]:
    """pip's target-platform flags for aarch64 CPython ``PYTHON_VERSION`` on a glibc of version ``glibc``."""
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "--abi", "abi3", "--abi", "none",
            "--platform", "manylinux2014_aarch64"]
    for minor in range(17, glibc[1] + 1) if glibc[0] == 2 else ():
        args += ["--platform", f"manylinux_2_{minor}_aarch64"]
    return args + ["--platform", "any"]


def _install_wheels(userland: Userland, glibc: tuple[int, int]) -> list[str]:
    wheels = userland.downloads / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platform = wheel_platform_args(glibc)
    requirements = pinned_requirements()
    _log.info(f"  pip download (aarch64): {' '.join(requirements)}")
    _run_tool([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *platform,
               "-d", str(wheels), *requirements], "pip download of the aarch64 wheels")
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    _run_tool([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
               "--no-deps", "--no-warn-script-location", *platform, "--target", str(userland.site_packages),
               *files], "pip install --target of the aarch64 wheels")
    return [Path(f).name for f in files]


LAUNCHER = """#!/bin/sh
# The arm64 python of this wearface userland (made by wearface.host_tools.device.emulate; rebuilt with it).
# QEMU_CPU picks the emulated CPU model (default {default_cpu}); Numba compiles for NUMBA_CPU_NAME
# (default: the same model), because under qemu llvmlite sees the host's /proc/cpuinfo.
USERLAND={folder}
export QEMU_LD_PREFIX="$USERLAND/sysroot"
export PYTHONHOME="$USERLAND/sysroot/usr"
export PYTHONPATH="$USERLAND/project:$USERLAND/site-packages"
export PYTHONNOUSERSITE=1
export QEMU_CPU="${{QEMU_CPU:-{default_cpu}}}"
export NUMBA_CPU_NAME="${{NUMBA_CPU_NAME:-$QEMU_CPU}}"
export NUMBA_CACHE_DIR="$USERLAND/numba-cache"
exec {qemu} -0 "$USERLAND/bin/python3" "$USERLAND/sysroot/usr/bin/python{version}" "$@"
"""


def _write_launcher(userland: Userland, qemu: str) -> None:
    userland.launcher.parent.mkdir(parents=True, exist_ok=True)
    text = LAUNCHER.format(folder=shlex.quote(str(userland.folder.resolve())), qemu=shlex.quote(qemu),
                           default_cpu=DEFAULT_QEMU_CPU, version=PYTHON_VERSION)
    tmp = userland.launcher.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(userland.launcher)


def _project_sources() -> dict[str, Path]:
    """Where this host imports ``wearface.<pkg>`` from (a checkout for an editable install)."""
    found = {}
    for package in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(f"wearface.{package}")
        if spec is None or not spec.submodule_search_locations:
            raise UserlandBuildError(f"wearface.{package} is not importable on this host: install the project "
                                     f"(pip install -e .) before preparing the arm64 userland")
        found[package] = Path(list(spec.submodule_search_locations)[0])
    return found


def _tree_files(root: Path) -> dict[str, Path]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__"))]
        for name in filenames:
            if name.endswith((".pyc", ".pyo", ".nbi", ".nbc")) or name.startswith("."):
                continue
            path = Path(dirpath) / name
            files[str(path.relative_to(root))] = path
    return files


def sync_project(userland: Userland) -> int:
    """Copy the project's packages into ``project/wearface/`` (changed files only); returns files changed.

    Copies keep their modification times, so Numba's on-disk cache stays valid across syncs.
    """
    changed = 0
    for package, source in _project_sources().items():
        target = userland.project / "wearface" / package
        wanted, present = _tree_files(source), (_tree_files(target) if target.is_dir() else {})
        for rel, src in wanted.items():
            dst = target / rel
            st = src.stat()
            if rel in present:
                dt = dst.stat()
                if dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
                    continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            changed += 1
        for rel in present.keys() - wanted.keys():
            (target / rel).unlink()
            changed += 1
    return changed


def _folder_size_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One preparer per folder at a time (two test sessions, or a test and ``wearface board emulate``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_python(userland: Userland, args: Sequence[str], qemu_cpu: str = DEFAULT_QEMU_CPU,
               numba_cpu: str | None = None, timeout_s: float | None = None, check: bool = True,
               **popen) -> subprocess.CompletedProcess:
    """Run the emulated python with ``args``; output captured as text unless ``popen`` says otherwise."""
    popen.setdefault("capture_output", True)
    popen.setdefault("text", True)
    env = userland.env(qemu_cpu, numba_cpu, popen.pop("env", None))
    done = subprocess.run([str(userland.launcher), *args], env=env, timeout=timeout_s, check=False, **popen)
    if check and done.returncode != 0:
        tail = "\n".join(((done.stdout or "") + (done.stderr or "")).strip().splitlines()[-15:])
        raise UserlandBuildError(f"emulated python ({qemu_cpu}) {shlex.join(args)} exited {done.returncode}:\n{tail}")
    return done


SMOKE_CHECK = ("import platform, numpy, numba, cv2, cryptography, serial, pytest, hypothesis; "
               "print(platform.machine(), numpy.__version__, numba.__version__, cv2.__version__)")


def prepare_userland(folder: Path | str | None = None, *, sources: Path | None = None, keep_downloads: bool = False,
                     rebuild: bool = False) -> Userland:
    """Build the arm64 userland in ``folder`` unless its stamp says it is ready; always re-sync the project.

    ``sources``: an apt sources file for an arm64 mirror (default: the host's own Debian sources).
    ``keep_downloads``: keep the .debs and wheels (~135 MB) after installing them.
    Raises :class:`QemuMissingError` without qemu-user-static, :class:`UserlandBuildError` when apt,
    dpkg-deb or pip fail (their output quoted).
    """
    qemu = find_qemu()
    userland = Userland(Path(folder).expanduser() if folder else default_userland_dir())
    with _locked(userland.folder):
        if not rebuild and is_ready(userland):
            if sync_project(userland):
                _compile(userland, [userland.project])
            _write_launcher(userland, qemu)  # cheap; follows a moved qemu binary
            return userland
        _build(userland, qemu, sources, keep_downloads)
    return userland


def _compile(userland: Userland, folders: Sequence[Path]) -> None:
    """Precompile with the emulated interpreter itself (its own magic number; Debian ships no .pyc)."""
    run_python(userland, ["-m", "compileall", "-q", "-j", "0", *map(str, folders)], timeout_s=600)


def _build(userland: Userland, qemu: str, sources: Path | None, keep_downloads: bool) -> None:
    dpkg_deb = _require_tool("dpkg-deb", "it unpacks the arm64 .debs (Debian/Ubuntu package dpkg)")
    _log.info(f"preparing the arm64 userland in {userland.folder} (once; ~30 s and ~0.5 GB)")
    timings: dict[str, float] = {}
    for stale in (userland.stamp, ):
        stale.unlink(missing_ok=True)
    for stale in (userland.sysroot, userland.site_packages, userland.project, userland.downloads,
                  userland.folder / "apt"):
        shutil.rmtree(stale, ignore_errors=True)

    start = time.perf_counter()
    debs = _fetch_debs(userland.folder, sources)
    timings["apt_s"] = time.perf_counter() - start
    _log.info(f"  apt: {len(debs)} arm64 packages ({sum(d.stat().st_size for d in debs) / 1e6:.0f} MB) "
        f"in {timings['apt_s']:.1f} s")

    start = time.perf_counter()
    userland.sysroot.mkdir(parents=True)
    for deb in debs:
        _run_tool([dpkg_deb, "-x", str(deb), str(userland.sysroot)], f"dpkg-deb -x {deb.name}")
    timings["unpack_s"] = time.perf_counter() - start
    if not userland.interpreter.is_file():
        raise UserlandBuildError(f"{userland.interpreter} missing after unpacking {len(debs)} packages")

    start = time.perf_counter()
    wheels = _install_wheels(userland, _glibc_version(debs))
    timings["wheels_s"] = time.perf_counter() - start
    _log.info(f"  wheels: {len(wheels)} installed in {timings['wheels_s']:.1f} s")

    _write_launcher(userland, qemu)
    sync_project(userland)
    start = time.perf_counter()
    _compile(userland, [userland.sysroot / "usr" / "lib" / f"python{PYTHON_VERSION}", userland.project])
    timings["compile_s"] = time.perf_counter() - start

    start = time.perf_counter()
    smoke = run_python(userland, ["-c", SMOKE_CHECK], timeout_s=300).stdout.split()
    timings["smoke_s"] = time.perf_counter() - start
    if not smoke or smoke[0] != "aarch64":
        raise UserlandBuildError(f"the emulated python reports machine {smoke[:1]}, expected aarch64")
    _log.info(f"  emulated python works: {' '.join(smoke)}")

    downloads_bytes = _folder_size_bytes(userland.downloads) + _folder_size_bytes(userland.folder / "apt")
    if not keep_downloads:
        shutil.rmtree(userland.downloads, ignore_errors=True)
        shutil.rmtree(userland.folder / "apt" / "archives", ignore_errors=True)
    size = _folder_size_bytes(userland.folder)
    timings["total_s"] = sum(timings.values())
    stamp = {"recipe": recipe(), "qemu": qemu_version(qemu), "debian_packages_unpacked": [d.name for d in debs],
             "wheels": wheels, "timings_s": {k: round(v, 2) for k, v in timings.items()},
             "size_bytes": size, "downloads_bytes": downloads_bytes, "kept_downloads": keep_downloads,
             "versions": smoke[1:], "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = userland.stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    tmp.replace(userland.stamp)
    _log.info(f"arm64 userland ready in {timings['total_s']:.1f} s, {size / 1e6:.0f} MB ({userland.folder})")


# ------------------------------------------------------------------------------------------ the board

#: the firmware's camera under emulation when none is named: there is no camera device inside qemu-user
EMULATED_DEFAULT_VIDEO = "synthetic"


def firmware_command(userland: Userland) -> list[str]:
    """The firmware process as the emulated board's init starts it (``--board ...`` is appended)."""
    return [str(userland.launcher), "-m", "wearface.firmware"]


def emulated_board_file(board_file: str | Path, flash_dir: str | Path) -> Path:
    """A copy of an unprovisioned ``board_file`` that trusts the development key, beside ``flash_dir``
    (``FLASH.board.toml``): emulation is a development board, never shipped hardware."""
    from ..bundle.keys import DEV_PUBLIC_KEY, provision_board_file

    flash_dir = Path(flash_dir).resolve()
    flash_dir.parent.mkdir(parents=True, exist_ok=True)
    return provision_board_file(board_file, DEV_PUBLIC_KEY, flash_dir.parent / f"{flash_dir.name}.board.toml")


def emulated_board(board_file: str | Path, flash_dir: str | Path, *, userland: Userland | None = None,
                   video: str | None = EMULATED_DEFAULT_VIDEO, qemu_cpu: str | None = None, restart: bool = True,
                   dev_key: bool = True):
    """A :class:`~wearface.host_tools.device.virtual_board.VirtualBoard` whose firmware runs on the board's own
    instruction set: the real ``python -m wearface.firmware`` under qemu-aarch64 with the board's CPU model,
    on a fresh pty per boot (``.port`` is the stable path for ``wearface flash/monitor``), ``flash_dir``
    as its flash.  Not started: use it as a context manager or call ``start()``.

    ``video``: a file the camera plays, or ``"synthetic"`` (default: a scene made in code); ``None`` keeps the
    board's own ``[camera]`` source (a device index does not exist under emulation).
    Raises :class:`NotAarch64BoardError` for a board that is not aarch64 and the errors of
    :func:`prepare_userland` (the userland is prepared here when ``userland`` is not given).
    ``dev_key``: a board file that trusts no key (real hardware ships unprovisioned) is emulated from a copy
    provisioned with the development key (``emulated_board_file``), so the shipped dev bundles boot; False
    emulates the unprovisioned board, which refuses every bundle.
    """
    from wearface.firmware.board import load_board

    from .virtual_board import VirtualBoard

    board = load_board(board_file)
    cpu = qemu_cpu or board_qemu_cpu(board)
    if dev_key and not board.public_keys:
        board_file = emulated_board_file(board_file, flash_dir)
    userland = userland or prepare_userland()
    return VirtualBoard(flash_dir, Path(board_file).resolve(), video, firmware_cmd=firmware_command(userland),
                        env=userland.env(cpu), restart=restart)
