"""Peak resident memory of the firmware process on each emulated aarch64 board while its loop runs, against
the board's RAM (``ram_mb``), beside the same firmware, board file and video on x86.

    python3 bench/bench_memory.py [--boards boards/rpi-zero2w.toml boards/a55-dotprod.toml] [--frames 150]

Per board: start the real firmware (``wearface board emulate``'s machinery: qemu-aarch64 with the board's CPU
model, a pty, a fresh flash folder), flash ``models/default.wfb`` with the host tools, enrol one face, reboot,
and let the loop play a lossless synthetic video (``--frames`` frames) to its end, sampling
``/proc/PID/smaps`` every ``--sample-s`` seconds.  Reported:

* ``peak total``: the process's ``VmHWM`` (kernel's peak RSS): the aarch64 program *plus qemu itself*.
* ``peak guest``: the largest sampled sum of RSS over the guest's own mappings (qemu-user maps guest memory 1:1
  in the process); qemu's translation buffer (the ``rwx`` mapping), its heap and its binary are left out.  This
  is the estimate of what the board would hold; sampling can miss a peak shorter than the period.
* ``x86 peak``: ``VmHWM`` of the same firmware run natively here (x86 libraries differ in size).

Emulation proves memory (the same program, the aarch64 builds of numpy/numba/OpenCV), not speed.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: qemu-user (64-bit guest on x86_64) maps guest memory from these addresses up; its own mappings live at the top
#: of the host address space (0x7f...) and in its brk heap
HOST_ONLY_FROM = 0x7000_0000_0000
QEMU_MAPPINGS = ("[heap]", "[stack]", "[vdso]", "[vvar]", "[vsyscall]", "qemu-aarch64")
MB = 1024 * 1024


def read_status_kb(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def guest_rss_kb(pid: int) -> tuple[int, int]:
    """(guest RSS, qemu RSS) in KiB from /proc/PID/smaps (see the module docstring for the split)."""
    guest = qemu = 0
    start, perms, name = 0, "", ""
    for line in open(f"/proc/{pid}/smaps"):
        head = re.match(r"([0-9a-f]+)-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)", line)
        if head:
            start, perms, name = int(head.group(1), 16), head.group(2), head.group(3)
        elif line.startswith("Rss:"):
            kb = int(line.split()[1])
            if start >= HOST_ONLY_FROM or "x" in perms and "w" in perms or any(q in name for q in QEMU_MAPPINGS):
                qemu += kb
            else:
                guest += kb
    return guest, qemu


class Sampler(threading.Thread):
    """Samples the firmware process's memory until stopped; keeps the peaks (KiB)."""

    def __init__(self, board, period_s: float, emulated: bool):
        super().__init__(daemon=True)
        self.board, self.period_s, self.emulated = board, period_s, emulated
        self.peak_guest_kb = self.peak_hwm_kb = self.samples = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            proc = self.board.proc
            try:
                if proc is not None and proc.poll() is None:
                    self.peak_hwm_kb = max(self.peak_hwm_kb, read_status_kb(proc.pid, "VmHWM"))
                    if self.emulated:
                        self.peak_guest_kb = max(self.peak_guest_kb, guest_rss_kb(proc.pid)[0])
                    self.samples += 1
            except (OSError, ValueError):
                pass  # the process ended between poll() and the read
            self.stop_event.wait(self.period_s)


def write_video(path: Path, frames: int) -> Path:
    import cv2

    from wearface.firmware import scene

    writer = None
    for frame in scene.scene_frames(scene.portrait_scene(640, 480, frames), frames, 640, 480):
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 15.0, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    return path


def measure(board_file: Path, bundle: bytes, video: Path, photo: Path, work: Path, userland, emulated: bool,
            period_s: float, timeout_s: float) -> dict:
    from wearface.firmware import protocol as P
    from wearface.host_tools.device import emulate
    from wearface.host_tools.device.enroll import enroll_photos
    from wearface.host_tools.device.flash import flash
    from wearface.host_tools.device.link import Link
    from wearface.host_tools.device.virtual_board import VirtualBoard

    flash_dir = work / f"flash-{'arm64' if emulated else 'x86'}-{board_file.stem}"
    if emulated:
        board = emulate.emulated_board(board_file, flash_dir, userland=userland, video=str(video), restart=False)
    else:
        board = VirtualBoard(flash_dir, board_file, str(video), restart=False)
    ended = threading.Event()
    frames = {}

    def on_event(frame):
        if frame.payload.get("event") == "camera.ended":
            frames["n"] = frame.payload.get("frames")
            ended.set()

    start = time.monotonic()
    with board, Link(str(board.port), open_timeout_s=60, on_event=on_event) as link:
        sampler = Sampler(board, period_s, emulated)
        sampler.start()
        link.request(P.Opcode.INFO, timeout_s=timeout_s / 3)
        flash(link, bundle, name="bundle", confirm_timeout_s=timeout_s / 2)
        ended.wait(timeout_s / 3)
        enroll_photos(link, "grace", [photo])
        ended.clear()
        link.request(P.Opcode.REBOOT, timeout_s=60)
        if not ended.wait(timeout_s):
            raise SystemExit(f"{board_file.name}: the loop did not reach the video's end in {timeout_s:.0f} s")
        info = link.request(P.Opcode.INFO)
        stats = link.request(P.Opcode.STATS)
        sampler.stop_event.set()
        sampler.join()
    return {"peak_total_mb": sampler.peak_hwm_kb / 1024, "peak_guest_mb": sampler.peak_guest_kb / 1024,
            "samples": sampler.samples, "frames": frames.get("n"), "kernels_path": info.get("kernels_path"),
            "fps": stats.get("fps"), "wall_s": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", nargs="+", default=[str(REPO / "boards" / "rpi-zero2w.toml"),
                                                         str(REPO / "boards" / "a55-dotprod.toml")])
    parser.add_argument("--bundle", default=str(REPO / "models" / "default.wfb"))
    parser.add_argument("--frames", type=int, default=150, help="frames of the synthetic video the loop plays")
    parser.add_argument("--sample-s", type=float, default=0.5, help="smaps sampling period")
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    parser.add_argument("--userland", default=None)
    args = parser.parse_args(argv)

    import cv2

    from wearface.firmware import scene
    from wearface.firmware.board import load_board
    from wearface.host_tools.device import emulate

    userland = emulate.prepare_userland(args.userland)
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    video = write_video(work / "scene.avi", args.frames)
    photo = work / "grace.png"
    cv2.imwrite(str(photo), cv2.resize(scene.grace_hopper_face(), (128, 128), interpolation=cv2.INTER_AREA))
    bundle = Path(args.bundle).read_bytes()
    rows = []
    for board_path in map(Path, args.boards):
        board = load_board(board_path)
        cpu = emulate.board_qemu_cpu(board)
        arm = measure(board_path, bundle, video, photo, work, userland, True, args.sample_s, args.timeout_s)
        x86 = measure(board_path, bundle, video, photo, work, userland, False, args.sample_s, args.timeout_s)
        rows.append((board, cpu, arm, x86))
        print(f"{board.name}: arm64 {arm}  x86 {x86}", file=sys.stderr, flush=True)

    print("| board | RAM | qemu CPU | kernels path | frames | peak total (emulated, incl. qemu) | "
          "peak guest (estimate) | guest / RAM | x86 native peak |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for board, cpu, arm, x86 in rows:
        share = f"{100 * arm['peak_guest_mb'] / board.ram_mb:.0f}%" if board.ram_mb else "-"
        print(f"| {board.name} | {board.ram_mb} MB | {cpu} | {arm['kernels_path']} | {arm['frames']} | "
              f"{arm['peak_total_mb']:.0f} MB | {arm['peak_guest_mb']:.0f} MB | {share} | {x86['peak_total_mb']:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
