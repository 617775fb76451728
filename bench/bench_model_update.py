"""A model update without re-enrolment, on the real firmware (issue 18): enrol on one bundle, flash a bundle of
another embedding space, and watch the board recognise the person in its video with the re-embedded crops.

Prints, per bundle: its embedding space, how long the board took to re-embed the kept crops after the
confirmation (wall time, from the events), and the recognitions seen in the synthetic video (Grace Hopper).

    python3 bench/bench_model_update.py --first models/default.wfb --second B.wfb [--watch-s 20]

B.wfb: e.g. ``wearface bundle build -o B.wfb --align models/checkpoints/align.pt --embed
models/checkpoints/model_b_distill.pt --net B --data ../shared/data --calibration 128 --method mse --threshold 0.611
--key keys/dev_ed25519.pem --model-version 1.1-b88`` (not committed: CelebA-derived weights, 1.2 MB).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from wearface.firmware import protocol as P
from wearface.firmware.scene import grace_hopper_path
from wearface.host_tools.device.enroll import enroll_photos
from wearface.host_tools.device.flash import flash
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard


def watch(link_events: list, seconds: float) -> list:
    start = len(link_events)
    time.sleep(seconds)
    return [e for e in link_events[start:] if e.get("event") in ("person.recognised", "person.unknown")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first", default="models/default.wfb")
    ap.add_argument("--second", required=True)
    ap.add_argument("--watch-s", type=float, default=20.0)
    args = ap.parse_args()
    events: list = []
    with tempfile.TemporaryDirectory() as tmp, VirtualBoard(Path(tmp) / "flash") as vb:
        with Link(str(vb.port), open_timeout_s=10, on_event=lambda f: events.append(f.payload)) as link:
            flash(link, Path(args.first).read_bytes())
            first = link.request(P.Opcode.INFO)
            enroll_photos(link, "grace", [grace_hopper_path()])
            seen_first = watch(events, args.watch_s)
            t0 = time.monotonic()
            result = flash(link, Path(args.second).read_bytes())
            second = link.request(P.Opcode.INFO)
            while time.monotonic() - t0 < 120:
                grace = link.request(P.Opcode.GALLERY_LIST)["people"][0]
                if grace["usable"]:
                    break
                time.sleep(0.2)
            done = [e for e in events if e.get("event") == "gallery.reembed" and e.get("state") == "done"]
            seen_second = watch(events, args.watch_s)
        print(f"{'bundle':<40} {'space':<18} {'recognised grace':>17} {'unknown':>8}")
        for info, seen in ((first, seen_first), (second, seen_second)):
            named = sum(1 for e in seen if e.get("name") == "grace")
            unknown = sum(1 for e in seen if e["event"] == "person.unknown")
            print(f"{str(info.get('model_version')):<40} {str(info.get('embedding_space')):<18} {named:>17} {unknown:>8}")
        print(f"second bundle confirmed: {result.confirmed}; grace after the update: usable {grace['usable']}, "
              f"spaces {grace['spaces']}, crops {grace['crops']}; re-embedding done events: {len(done)} "
              f"({done[0]['total'] if done else 0} crops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
