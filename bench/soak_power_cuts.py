"""Soak and chaos (not a test): power cuts of the real firmware at random points, through a byte-damaging line.

One flash folder for the whole run.  The real firmware runs on the virtual board
(``host_tools/device/virtual_board.py``: its own process on a pty, the folder as its flash) behind
``host_tools/device/fault_proxy.py`` flipping one bit of a byte with ``--flip-rate`` and dropping a byte with
``--drop-rate`` (each byte, both directions, seeded).  Each cycle picks a phase at random:

* ``flash``: a whole flash of the next bundle (INFO, upload, FLASH_END, REBOOT, trial boot, confirmation);
* ``trial``: a bundle uploaded and accepted (pending), then REBOOT; the cut lands before the trial slot runs;
  one trial cycle in four is a *crash loop*: the board is cut again at each trial boot until it rolls back;
* ``confirm``: as ``trial``, the cut lands between the trial slot running and its confirmation;
* ``enrol``: ENROLL_IMAGES of a new name (one 128-px photo, ~3.8 KB);
* ``deletion``: GALLERY_DELETE of an enrolled name;

starts it from the host, SIGKILLs the firmware (a power cut) at a moment drawn uniformly over the operation's
measured duration, lets the supervisor boot it again, and checks:

1. it boots a verified slot: INFO answers ``running`` (not ``recovery``) within ``SETTLE_TIMEOUT_S``, and the
   active slot's image on the flash has the SHA-256 the slot table records, is one of this run's bundles and
   verifies here (structure, hash, signature, compatible);
2. every enrolment the board acknowledged is still there (its name, and at least as many kept crops as were
   acknowledged or seen), every acknowledged deletion stays deleted; what a check sees becomes the new floor,
   so committed state must never go backwards even when its answer was lost in the cut;
3. every ``--flash-every`` (K) cycles, and after every brick, a whole uncut flash of the next bundle must succeed
   (confirmed on trial).

Bricks (the board does not come back to a verified slot) and lost acknowledged enrolments must be 0.  A cut
takes ~4-8 s on the 2-core development machine (most of it the firmware's restart); measure with ``--cuts 20``.

    python3 bench/soak_power_cuts.py --cuts 1000 --seed 1 --out /tmp/soak.json --flash-dir /tmp/soak-flash

Bundles are small (the test bundle's alignment net and an 8-channel embedding net: 164 KB, ~1 s to build) so
a flash costs ~2 s; the firmware treats them as any other signed bundle (``build_test_bundle``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wearface.firmware import protocol as P
from wearface.firmware.board import load_board
from wearface.host_tools.device.fault_proxy import FaultProxy
from wearface.host_tools.device.flash import flash, wait_for_verdict
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard, default_board_file, exit_on_signals
from wearface.host_tools.errors import HostToolError, UnknownNameError

PHASES = ("flash", "trial", "confirm", "enrol", "deletion")
#: a whole uncut flash every this many cycles (and after any brick): "can be flashed again"
FLASH_EVERY = 5
#: a board that is not running a confirmed slot this long after a cut is a brick (s)
SETTLE_TIMEOUT_S = 90.0
#: share of trial cycles that become crash loops (cut at every trial boot until the board rolls back)
CRASH_LOOP_SHARE = 0.25
#: the gallery is kept between these sizes (people) so GALLERY_LIST stays one short answer on a damaging line
MIN_PEOPLE, MAX_PEOPLE = 1, 12
#: after the cut, the operation's thread gets this long to end (s); one still waiting then (a verdict poll, an
#: upload's resume wait) is left to time out on its closed link: it can receive nothing more, so it acks nothing
OP_JOIN_S = 0.5
#: cut moments are drawn uniformly over [0, this x the operation's measured duration] (s): some land after it
DELAY_SPAN = 1.3
#: the supervisor's boot after a cut must have its pty within this (s)
BOOT_TIMEOUT_S = 30.0
#: bundles the run flashes in turn (different seeds: a new embedding space each time, so the gallery re-embeds)
N_BUNDLES = 3
#: photo for enrolment: grace_hopper.jpg shrunk to this longest side (px), JPEG quality (face still detected)
ENROL_SIDE_PX, ENROL_JPEG_QUALITY = 128, 70
#: the embedding net of the soak bundles: NIN widths, last conv, fully connected width (a small NetSpec)
SOAK_WIDTHS, SOAK_LAST_CONV, SOAK_FC = (8, 8, 8, 8, 8), 8, 32


# ------------------------------------------------------------------------------------------- inputs

def soak_bundles(n: int = N_BUNDLES) -> list[bytes]:
    """``n`` small signed bundles (dev key, every board family), distinct seeds and model versions."""
    from wearface.host_tools.bundle.bundle_build import build_test_bundle
    from wearface.kernels import nets

    spec = nets._embedding_net("soak", SOAK_WIDTHS, SOAK_LAST_CONV, True, SOAK_FC, 0.0, 0.0, None)
    return [build_test_bundle(seed=10 + i, model_version=f"soak-{i}", embed_spec=spec) for i in range(n)]


def enrol_photo() -> bytes:
    """grace_hopper.jpg at ENROL_SIDE_PX, as JPEG bytes (~3.8 KB: crosses a 1e-4 line in ~2 tries)."""
    import cv2

    from wearface.firmware.scene import grace_hopper_path

    bgr = cv2.imread(str(grace_hopper_path()), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    s = ENROL_SIDE_PX / max(h, w)
    small = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, ENROL_JPEG_QUALITY])
    assert ok
    return buf.tobytes()


# ------------------------------------------------------------------------------------------- the truth

@dataclass
class Truth:
    """What the host knows the gallery must hold.  ``floors``: name -> kept crops it must have at least (acked
    or seen); ``deleted``: names whose deletion was acked or seen, never to come back."""

    floors: dict = field(default_factory=dict)
    deleted: set = field(default_factory=set)

    def acked_enrol(self, name: str, added: int) -> None:
        self.floors[name] = self.floors.get(name, 0) + int(added)
        self.deleted.discard(name)

    def acked_delete(self, name: str) -> None:
        self.floors.pop(name, None)
        self.deleted.add(name)

    def check(self, people: list[dict], in_flight: tuple = ()) -> dict:
        """Compare GALLERY_LIST's ``people`` with the truth: ``lost`` (name, must have, has) and ``resurrected``
        names.  Names in ``in_flight`` (an unacked deletion at the cut) may be present or absent."""
        seen = {p["name"]: int(p.get("crops", 0)) for p in people}
        lost = [(n, need, seen.get(n, 0)) for n, need in sorted(self.floors.items())
                if n not in in_flight and seen.get(n, 0) < need]
        resurrected = sorted(n for n in self.deleted if n in seen)
        return {"lost": lost, "resurrected": resurrected}

    def observe(self, people: list[dict], in_flight: tuple = ()) -> None:
        """What a check saw is committed state: it becomes the floor (an unacked deletion that happened is now
        a deletion that must stay)."""
        seen = {p["name"]: int(p.get("crops", 0)) for p in people}
        for name in in_flight:
            if name not in seen and name in self.floors:
                self.acked_delete(name)
        for name, crops in seen.items():
            if name not in self.deleted:
                self.floors[name] = max(self.floors.get(name, 0), crops)


@dataclass
class Rollbacks:
    """Slots seen turning bad (a rollback, or a flash refused), from INFO's slot records.  ``seen``: slot ->
    (state, bad_reason, sha256) at the last look; ``confirmed``: the confirmed slot at the last settled look."""

    seen: dict = field(default_factory=dict)
    confirmed: str | None = None

    def rewritten(self) -> None:
        """The write target (the slot that is not the confirmed one) is about to get a new image: a later bad
        state of it is new even with the same bundle and reason as before (two crash loops of one bundle in one
        slot with no look in between were counted once before this)."""
        if self.confirmed in ("A", "B"):
            self.seen.pop("B" if self.confirmed == "A" else "A", None)

    def look(self, info: dict) -> list[str]:
        """The bad reasons of slots that turned bad since the last look."""
        if info.get("state") == "running" and not info.get("trial"):
            self.confirmed = info.get("confirmed_slot")
        new = []
        for slot, rec in (info.get("slots") or {}).items():
            key = (rec.get("state"), rec.get("bad_reason"), rec.get("sha256"))
            if rec.get("state") == "bad" and self.seen.get(slot) != key:
                new.append(rec.get("bad_reason") or "?")
            self.seen[slot] = key
        return new


# ------------------------------------------------------------------------------------------- operations

def op_flash(link: Link, data: bytes, rec: dict) -> None:
    """A whole flash (upload, FLASH_END, REBOOT, verdict); ``rec["step"]`` says how far it got."""
    def progress(done, total):
        rec["step"], rec["bytes"] = ("upload" if done < total else "flash_end"), done
    rec["step"] = "info"
    result = flash(link, data, reboot=False, progress=progress, resume_timeout_s=3.0)
    rec["step"] = "reboot"
    link.request(P.Opcode.REBOOT, timeout_s=5.0, retries=12)
    rec["step"] = "verdict"
    wait_for_verdict(link, result.slot, timeout_s=30.0)
    rec["acked"] = True


def op_reboot(link: Link, slot: str, rec: dict) -> None:
    """REBOOT into the pending ``slot`` and wait for its confirmation."""
    rec["step"] = "reboot"
    link.request(P.Opcode.REBOOT, timeout_s=5.0, retries=12)
    rec["step"] = "verdict"
    wait_for_verdict(link, slot, timeout_s=30.0)
    rec["acked"] = True


def op_enrol(link: Link, name: str, photo: bytes, rec: dict) -> None:
    out = link.request(P.Opcode.ENROLL_IMAGES, {"name": name, "images": [photo]}, timeout_s=10.0, retries=16,
                       response_bytes=1024)
    rec["acked"], rec["added"] = True, int(out["added"])


def op_delete(link: Link, name: str, rec: dict) -> None:
    try:
        link.request(P.Opcode.GALLERY_DELETE, {"name": name}, timeout_s=5.0, retries=12)
        rec["acked"] = True
    except UnknownNameError:
        rec["not_found"] = True


def run_op(op: Callable, rec: dict) -> None:
    try:
        op(rec)
    except Exception as exc:  # noqa: BLE001 - a cut makes operations fail in many ways; recorded, never fatal
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"


# ------------------------------------------------------------------------------------------- the soak

class Brick(Exception):
    """The board did not come back to a verified slot."""


@dataclass
class Estimates:
    """Measured durations (s) of uncut operations; cut moments are drawn over them (medians of the last 5)."""

    seen: dict = field(default_factory=lambda: {k: [] for k in ("flash", "to_trial", "to_confirm", "enrol",
                                                                   "deletion")})

    def add(self, key: str, seconds: float) -> None:
        self.seen[key] = (self.seen[key] + [float(seconds)])[-5:]

    def get(self, key: str, default: float = 2.0) -> float:
        return statistics.median(self.seen[key]) if self.seen[key] else default


class Soak:
    """The board, the damaging line and the bookkeeping of one soak run.  ``start`` -> ``cycle`` ... -> ``stop``."""

    def __init__(self, flash_dir: str | Path, seed: int = 1, flip_rate: float = 1e-4, drop_rate: float = 1e-5,
                 flash_every: int = FLASH_EVERY, log: Callable[[str], None] = print):
        self.flash_dir = Path(flash_dir).resolve()
        self.cable = self.flash_dir.with_name(self.flash_dir.name + ".cable")
        self.rng = random.Random(seed)
        self.seed, self.flip_rate, self.drop_rate, self.flash_every = seed, flip_rate, drop_rate, flash_every
        self.log = log
        self.board_file = default_board_file()
        board = load_board(self.board_file)
        self.keys, self.compatible = list(board.public_keys), board.compatible
        self.slot_files = {"A": board.flash.slot_a, "B": board.flash.slot_b}
        self.gallery_file, self.table_file = board.flash.gallery, board.flash.slot_table
        self.bundles = soak_bundles()
        self.by_sha = {hashlib.sha256(b).hexdigest(): i for i, b in enumerate(self.bundles)}
        self.photo = enrol_photo()
        self.truth = Truth()
        self.est = Estimates()
        self.cuts: list[dict] = []
        self.anomalies: list[dict] = []
        self.counts = {"bricks": 0, "lost": 0, "resurrected": 0, "rollbacks": 0, "flash_again": 0,
                       "flash_again_failed": 0, "unsettled": 0}
        self.rollback_reasons: dict = {}
        self.cycles = 0
        self.phase = "start"
        self.rollback_phases: dict = {}
        self.running_bundle: int | None = None
        self.slot_looks = Rollbacks()
        self.board: VirtualBoard | None = None
        self.proxy: FaultProxy | None = None
        self.t_start = time.monotonic()

    # -- lifecycle

    def start(self) -> "Soak":
        self.board = VirtualBoard(self.flash_dir).start()
        self.proxy = FaultProxy(self.board.port, self.cable, corrupt_p=self.flip_rate, drop_p=self.drop_rate,
                                seed=self.seed).start()
        with self.link() as link:
            info = self._first_info(link)
            if info["state"] != "running":
                self.flash_again(link)
            info = self.settle(link)
            self.record_slots(info)
            self.truth.observe(self.people(link))
            self.calibrate(link)
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.board is not None:
            self.board.stop()

    def link(self, timeout_s: float = 1.0, retries: int = 6) -> Link:
        return Link(str(self.cable), timeout_s=timeout_s, retries=retries, open_timeout_s=10.0)

    def _first_info(self, link: Link) -> dict:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            try:
                return link.request(P.Opcode.INFO, timeout_s=1.0, retries=2)
            except HostToolError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def calibrate(self, link: Link) -> None:
        """One uncut flash, enrolment and deletion: the first estimates of their durations."""
        self.flash_again(link)
        name = f"calibrate-{self.seed}-{int(time.time())}"
        self.enrol_uncut(link, name)
        t0 = time.monotonic()
        link.request(P.Opcode.GALLERY_DELETE, {"name": name}, timeout_s=5.0, retries=12)
        self.est.add("deletion", time.monotonic() - t0)
        self.truth.acked_delete(name)

    # -- uncut steps

    def next_bundle(self) -> int:
        return 0 if self.running_bundle is None else (self.running_bundle + 1) % len(self.bundles)

    def flash_again(self, link: Link) -> dict:
        """A whole uncut flash of the next bundle, timed step by step; raises when it does not confirm."""
        index = self.next_bundle()
        t0 = time.monotonic()
        self.slot_looks.rewritten()
        result = flash(link, self.bundles[index], reboot=False, resume_timeout_s=30.0)
        t_reboot = time.monotonic()
        link.request(P.Opcode.REBOOT, timeout_s=5.0, retries=12)
        t_trial = None
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            try:
                info = link.request(P.Opcode.INFO, timeout_s=1.0, retries=1)
            except HostToolError:
                continue
            if info["state"] == "running" and info["active_slot"] == result.slot:
                if info["trial"] and t_trial is None:
                    t_trial = time.monotonic()
                if not info["trial"] and info["confirmed_slot"] == result.slot:
                    t_done = time.monotonic()
                    self.est.add("flash", t_done - t0)
                    self.est.add("to_trial", (t_trial or t_done) - t_reboot)
                    self.est.add("to_confirm", t_done - t_reboot)
                    self.running_bundle = index
                    self.record_slots(info)
                    return info
            elif info["state"] != "running" or info["pending_slot"] != result.slot:
                raise HostToolError(f"flash again: the board did not keep slot {result.slot}: {_slot_line(info)}")
            time.sleep(0.05)
        raise HostToolError(f"flash again: slot {result.slot} not confirmed within 60 s")

    def enrol_uncut(self, link: Link, name: str) -> None:
        rec: dict = {}
        t0 = time.monotonic()
        op_enrol(link, name, self.photo, rec)
        self.est.add("enrol", time.monotonic() - t0)
        self.truth.acked_enrol(name, rec["added"])

    def people(self, link: Link) -> list[dict]:
        return link.request(P.Opcode.GALLERY_LIST, timeout_s=2.0, retries=12)["people"]

    # -- checks

    def settle(self, link: Link, timeout_s: float = SETTLE_TIMEOUT_S) -> dict:
        """INFO until the board runs a confirmed slot (a trial after the cut may confirm meanwhile); Brick if not."""
        deadline = time.monotonic() + timeout_s
        last: dict | None = None
        while time.monotonic() < deadline:
            try:
                info = link.request(P.Opcode.INFO, timeout_s=1.0, retries=1)
            except HostToolError:
                time.sleep(0.2)
                continue
            last = info
            if info["state"] == "running" and not info["trial"]:
                return info
            if info["state"] != "running":
                break
            time.sleep(0.2)
        if last is not None and last.get("state") == "running":
            self.counts["unsettled"] += 1
            self.anomaly("unsettled", f"still on trial after {timeout_s:.0f} s: {_slot_line(last)}")
            return last
        raise Brick(f"no verified slot: {_slot_line(last) if last else 'INFO never answered'}")

    def verify_running(self, info: dict) -> None:
        """The running slot's image on the flash matches its table entry, is this run's and verifies here."""
        from wearface.firmware.bundle import verify_bundle

        slot = info.get("active_slot")
        if info.get("state") != "running" or slot not in self.slot_files:
            raise Brick(f"not running a slot: {_slot_line(info)}")
        data = (self.flash_dir / self.slot_files[slot]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != info["slots"][slot]["sha256"] or digest not in self.by_sha:
            raise Brick(f"slot {slot} runs an image that is not the one recorded or not this run's "
                        f"(sha256 {digest[:12]}, table {info['slots'][slot]['sha256'][:12]})")
        bundle = verify_bundle(data, self.keys, self.compatible, self_test=False)
        if str(bundle.model_version) != info.get("model_version"):
            raise Brick(f"slot {slot}: INFO says model {info.get('model_version')}, the image is {bundle.model_version}")
        self.running_bundle = self.by_sha[digest]

    def record_slots(self, info: dict) -> list[str]:
        """Count rollbacks: slots that turned bad since the last look (reason -> count); returns new reasons."""
        new = self.slot_looks.look(info)
        for reason in new:
            self.counts["rollbacks"] += 1
            self.rollback_reasons[reason] = self.rollback_reasons.get(reason, 0) + 1
            self.rollback_phases[self.phase] = self.rollback_phases.get(self.phase, 0) + 1
            if reason != "trial_boots_exhausted":
                self.anomaly("rollback", f"a slot turned bad for {reason}: {_slot_line(info)}")
        return new

    def check_gallery(self, link: Link, in_flight: tuple = ()) -> dict:
        people = self.people(link)
        found = self.truth.check(people, in_flight)
        for name, need, has in found["lost"]:
            self.counts["lost"] += 1
            self.anomaly("lost", f"{name}: {has} kept crops, {need} acknowledged or seen")
        for name in found["resurrected"]:
            self.counts["resurrected"] += 1
            self.anomaly("resurrected", f"{name}: deleted (acknowledged or seen) but back")
        for name, _, _ in found["lost"]:  # counted once: from now on the floor is what is there
            self.truth.floors.pop(name, None)
        for name in found["resurrected"]:
            self.truth.deleted.discard(name)
        self.truth.observe(people, in_flight)
        return found

    def check(self, link: Link, in_flight: tuple = ()) -> dict:
        """Every cycle: settled on a verified slot, gallery intact.  Returns the INFO it judged."""
        info = self.settle(link)
        self.verify_running(info)
        self.record_slots(info)
        self.check_gallery(link, in_flight)
        return info

    def anomaly(self, kind: str, detail: str) -> None:
        self.anomalies.append({"cycle": self.cycles, "phase": self.phase, "kind": kind, "detail": detail})
        self.log(f"  !! {kind}: {detail}")

    # -- one cycle

    def cut(self, op: Callable, rec: dict, delay_s: float, link: Link) -> dict:
        """Run ``op(rec)`` on a thread, SIGKILL the firmware after ``delay_s``, close the host's link, wait for
        the supervisor's next boot.  Returns ``rec`` with ``during`` (the op was still running at the cut)."""
        boots = self.board.boots
        thread = threading.Thread(target=run_op, args=(op, rec), daemon=True, name="soak-op")
        thread.start()
        time.sleep(max(0.0, delay_s))
        rec["during"] = thread.is_alive()
        self.board.kill()
        time.sleep(0.2)  # bytes already on the way may still arrive
        link.close()
        thread.join(OP_JOIN_S)
        rec["op_ended"] = not thread.is_alive()
        if not self.board.wait_for_boot(boots + 1, BOOT_TIMEOUT_S):
            raise Brick(f"the firmware did not start again within {BOOT_TIMEOUT_S:.0f} s:\n{self.board.console_tail()}")
        return rec

    def _record(self, phase: str, rec: dict, delay_s: float, t0: float, **extra) -> dict:
        """Append one cut to the log (before its checks: a brick still leaves its cut counted); returns it."""
        entry = {"cycle": self.cycles, "phase": phase, "delay_s": round(delay_s, 3), "during": rec.get("during"),
                 "step": rec.get("step"), "acked": bool(rec.get("acked")), "error": rec.get("error"), **extra}
        self.cuts.append(entry)
        return entry

    def cycle(self) -> None:
        """One randomly chosen phase with its cut(s) and checks, then (every K cycles) a whole uncut flash."""
        self.cycles += 1
        phase = self.phase = self.rng.choice(PHASES)
        first, t0 = len(self.cuts), time.monotonic()
        try:
            try:
                getattr(self, f"_cycle_{phase}")(t0)
            except HostToolError as exc:  # a check that the line kept failing: look once more, else a brick
                self.anomaly("check_failed", f"{type(exc).__name__}: {exc}")
                with self.link() as link:
                    self.check(link)
            if self.cycles % self.flash_every == 0:
                self.flash_again_checked()
        except (Brick, HostToolError) as exc:
            self.counts["bricks"] += 1
            self.anomaly("brick", f"{type(exc).__name__}: {exc}\n{self.board.console_tail(10)}")
            for entry in self.cuts[first:]:
                entry["brick"] = True
            self.recover()
        finally:  # seconds per cut: the cycle's wall time (its checks and any uncut flash included) per cut
            per_cut = (time.monotonic() - t0) / max(1, len(self.cuts) - first)
            for entry in self.cuts[first:]:
                entry["s"] = round(per_cut, 2)

    def _cut_and_check(self, phase: str, op: Callable, delay_s: float, t0: float, in_flight: tuple = (),
                       after: Callable[[dict], None] | None = None) -> dict:
        rec: dict = {}
        link = self.link().open()
        self.cut(lambda r: op(link, r), rec, delay_s, link)
        if after is not None:
            after(rec)
        entry = self._record(phase, rec, delay_s, t0)
        with self.link() as check_link:
            info = self.check(check_link, in_flight)
        entry["slot"] = info.get("active_slot")
        self.log(f"{len(self.cuts):5d} {phase:<9} cut at {delay_s:6.2f} s {'during' if rec.get('during') else 'after '} "
                 f"{rec.get('step') or '':<9} acked={bool(rec.get('acked'))!s:<5} -> {_slot_line(info)}; "
                 f"{time.monotonic() - t0:5.1f} s")
        return rec

    def _cycle_flash(self, t0: float) -> None:
        data = self.bundles[self.next_bundle()]
        self.slot_looks.rewritten()
        delay = self.rng.uniform(0.0, DELAY_SPAN * self.est.get("flash", 3.0))
        self._cut_and_check("flash", lambda link, r: op_flash(link, data, r), delay, t0)

    def _pending(self) -> str:
        """Upload and accept the next bundle without rebooting (uncut); returns its slot."""
        self.slot_looks.rewritten()
        with self.link() as link:
            return flash(link, self.bundles[self.next_bundle()], reboot=False, resume_timeout_s=30.0).slot

    def _cycle_trial(self, t0: float) -> None:
        slot = self._pending()
        delay = self.rng.uniform(0.0, self.est.get("to_trial", 0.5))
        if self.rng.random() < CRASH_LOOP_SHARE:
            self._crash_loop(slot, delay, t0)
            return
        self._cut_and_check("trial", lambda link, r: op_reboot(link, slot, r), delay, t0)

    def _cycle_confirm(self, t0: float) -> None:
        slot = self._pending()
        lo, hi = self.est.get("to_trial", 0.5), self.est.get("to_confirm", 1.5)
        delay = self.rng.uniform(lo, max(hi, lo + 0.1))
        self._cut_and_check("confirm", lambda link, r: op_reboot(link, slot, r), delay, t0)

    def _crash_loop(self, slot: str, delay: float, t0: float) -> None:
        """Cut the trial boot, then cut each new trial boot of ``slot`` the moment the slot table on the flash
        counts it (before the loop can confirm it), until the board stops trying ``slot`` (rolled back after
        ``boot.trial_boots``, or confirmed); then check.  The table is read as a logic analyser would watch the
        flash: the board is not asked (it answers only after booting)."""
        rec: dict = {}
        link = self.link().open()
        self.cut(lambda r: op_reboot(link, slot, r), rec, delay, link)
        self._record("trial", rec, delay, t0, crash_loop=1)
        n, seen_attempts = 1, self._table().get("boot_attempts", 0)  # the restarted firmware is still importing
        while n < 8:
            table = self._wait_for_trial(slot, seen_attempts)
            if table is None:
                break
            seen_attempts = table["boot_attempts"]
            boots = self.board.boots
            self.board.kill()
            n += 1
            self._record("trial", {"during": True, "step": f"trial_boot_{seen_attempts}"}, 0.0, t0, crash_loop=n)
            if not self.board.wait_for_boot(boots + 1, BOOT_TIMEOUT_S):
                raise Brick("the firmware did not start again after a crash-loop cut")
        with self.link() as check_link:
            info = self.check(check_link)
        self.log(f"{len(self.cuts):5d} trial     crash loop of {n} cuts -> {_slot_line(info)}; "
                 f"{time.monotonic() - t0:5.1f} s")

    def _table(self) -> dict:
        """The slot table as on the flash now ({} while unreadable; it is replaced atomically)."""
        try:
            return json.loads((self.flash_dir / self.table_file).read_text("utf-8"))
        except (OSError, ValueError):
            return {}

    def _wait_for_trial(self, slot: str, seen_attempts: int, timeout_s: float = SETTLE_TIMEOUT_S) -> dict | None:
        """The slot table once it records a new trial boot of ``slot`` (None once ``slot`` is no longer pending)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            table = self._table()
            if table and table.get("pending") != slot:
                return None
            if table.get("active") == slot and table.get("boot_attempts", 0) > seen_attempts:
                return table
            time.sleep(0.005)
        raise Brick(f"slot {slot} neither booted on trial again nor left pending within {timeout_s:.0f} s")

    def _cycle_enrol(self, t0: float) -> None:
        if len(self.truth.floors) >= MAX_PEOPLE:
            self._delete_uncut()
        name = f"p{self.seed}-{self.cycles:05d}"

        def after(rec):
            if rec.get("acked"):
                self.truth.acked_enrol(name, rec["added"])
        delay = self.rng.uniform(0.0, DELAY_SPAN * self.est.get("enrol", 1.0))
        self._cut_and_check("enrol", lambda link, r: op_enrol(link, name, self.photo, r), delay, t0, after=after)

    def _delete_uncut(self) -> None:
        name = self.rng.choice(sorted(self.truth.floors))
        with self.link() as link:
            t0 = time.monotonic()
            link.request(P.Opcode.GALLERY_DELETE, {"name": name}, timeout_s=5.0, retries=12)
            self.est.add("deletion", time.monotonic() - t0)
        self.truth.acked_delete(name)

    def _cycle_deletion(self, t0: float) -> None:
        if len(self.truth.floors) < MIN_PEOPLE:
            with self.link() as link:
                self.enrol_uncut(link, f"p{self.seed}-{self.cycles:05d}-prep")
        name = self.rng.choice(sorted(self.truth.floors))

        def after(rec):
            if rec.get("acked"):
                self.truth.acked_delete(name)
            elif rec.get("not_found"):
                self.anomaly("lost", f"{name}: deletion answered NOT_FOUND for an enrolled name")
                self.counts["lost"] += 1
                self.truth.floors.pop(name, None)
        delay = self.rng.uniform(0.0, DELAY_SPAN * self.est.get("deletion", 0.5))
        self._cut_and_check("deletion", lambda link, r: op_delete(link, name, r), delay, t0, in_flight=(name,),
                            after=after)

    def flash_again_checked(self) -> None:
        """"Can be flashed again": a whole uncut flash must confirm (3 tries: the line may lose one), then check."""
        self.counts["flash_again"] += 1
        for attempt in range(3):
            try:
                with self.link() as link:
                    self.flash_again(link)
                    self.check(link)
                return
            except HostToolError as exc:
                self.anomaly("flash_again_try", f"try {attempt + 1}: {exc}")
        self.counts["flash_again_failed"] += 1
        raise Brick("cannot be flashed again (3 tries)")

    def recover(self) -> None:
        """After a brick: flash a bundle if the board answers at all, so the run can go on (counted already)."""
        try:
            with self.link() as link:
                self._first_info(link)
                self.flash_again(link)
                self.truth.observe(self.people(link))
        except Exception as exc:  # noqa: BLE001
            self.anomaly("unrecoverable", f"{type(exc).__name__}: {exc}")
            raise

    # -- the planted loss (tests)

    def plant_loss(self, name: str) -> None:
        """Delete ``name``'s row from the gallery's SQLite file behind the firmware's back (its crops and
        embeddings go with it): the next check must report it lost."""
        db = sqlite3.connect(str(self.flash_dir / self.gallery_file), timeout=10.0)
        try:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("DELETE FROM people WHERE name = ?", (name,))
            db.commit()
        finally:
            db.close()

    # -- results

    def summary(self) -> dict:
        per_phase = {}
        for phase in PHASES:
            rows = [c for c in self.cuts if c["phase"] == phase]
            seconds = [c["s"] for c in rows if c.get("s") is not None]
            per_phase[phase] = {"cuts": len(rows), "during_op": sum(1 for c in rows if c["during"]),
                                "acked": sum(1 for c in rows if c["acked"]),
                                "crash_loop_cuts": sum(1 for c in rows if c.get("crash_loop")),
                                "bricks": sum(1 for a in self.anomalies if a["phase"] == phase and a["kind"] == "brick"),
                                "lost": sum(1 for a in self.anomalies if a["phase"] == phase and a["kind"] == "lost"),
                                "rollbacks": self.rollback_phases.get(phase, 0),
                                "median_s": round(statistics.median(seconds), 2) if seconds else None,
                                "steps": _tally(c["step"] for c in rows if phase == "flash")}
        seconds = [c["s"] for c in self.cuts if c.get("s") is not None]
        wall = time.monotonic() - self.t_start
        return {"cuts": len(self.cuts), "cycles": self.cycles, **self.counts, "rollback_reasons": self.rollback_reasons,
                "per_phase": per_phase, "median_s_per_cut": round(statistics.median(seconds), 2) if seconds else None,
                "wall_s": round(wall, 1), "s_per_cut_overall": round(wall / max(1, len(self.cuts)), 2),
                "flash_every": self.flash_every, "seed": self.seed, "flip_rate": self.flip_rate,
                "drop_rate": self.drop_rate, "bundle_bytes": len(self.bundles[0]), "gallery_people": len(self.truth.floors),
                "estimates_s": {k: round(self.est.get(k), 2) for k in self.est.seen},
                "proxy": dict(self.proxy.counters) if self.proxy else {}, "anomalies": self.anomalies,
                "cut_log": self.cuts}


def _tally(items) -> dict:
    out: dict = {}
    for item in items:
        out[str(item)] = out.get(str(item), 0) + 1
    return out


def _slot_line(info: dict | None) -> str:
    if not info:
        return "no INFO"
    return (f"{info.get('state')} slot {info.get('active_slot')} ({info.get('model_version')}) trial={info.get('trial')} "
            f"confirmed={info.get('confirmed_slot')} pending={info.get('pending_slot')} "
            f"attempts={info.get('boot_attempts')} people={info.get('gallery_size')}")


def table(summary: dict) -> str:
    """The markdown table of a summary: cuts per phase, bricks, lost, rollbacks, median seconds per cut."""
    lines = ["| phase | cuts | cut while the operation ran | operation acked before the cut | bricks | lost acked "
             "enrolments | rollbacks seen | median s per cut |", "|---|---|---|---|---|---|---|---|"]
    for phase, row in summary["per_phase"].items():
        loop = f" (crash-loop cuts {row['crash_loop_cuts']})" if row["crash_loop_cuts"] else ""
        lines.append(f"| {phase} | {row['cuts']}{loop} | {row['during_op']} | {row['acked']} | {row['bricks']} | "
                     f"{row['lost']} | {row['rollbacks']} | {row['median_s']} |")
    lines.append("")
    lines.append(f"cuts {summary['cuts']} in {summary['cycles']} cycles; bricks **{summary['bricks']}**; lost acked "
                 f"enrolments **{summary['lost']}**; deletions come back {summary['resurrected']}; rollbacks seen "
                 f"{summary['rollbacks']} {summary['rollback_reasons']}; flashed again {summary['flash_again']} times "
                 f"(failed {summary['flash_again_failed']}); median {summary['median_s_per_cut']} s per cut, "
                 f"{summary['s_per_cut_overall']} s overall ({summary['wall_s']} s)")
    return "\n".join(lines)


def write_json(path: str | None, summary: dict) -> None:
    if path:
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, path)


def run_soak(cuts: int, flash_dir: str | Path, seed: int = 1, flip_rate: float = 1e-4, drop_rate: float = 1e-5,
             flash_every: int = FLASH_EVERY, out: str | None = None, log: Callable[[str], None] = print,
             soak: Soak | None = None) -> dict:
    """Make at least ``cuts`` power cuts (a crash loop may add a few); returns the summary (written to ``out``
    every 10 cycles and at the end)."""
    soak = soak or Soak(flash_dir, seed, flip_rate, drop_rate, flash_every, log)
    started = soak.board is not None
    try:
        if not started:
            soak.start()
        while len(soak.cuts) < cuts:
            soak.cycle()
            if soak.cycles % 10 == 0:
                write_json(out, soak.summary())
        return soak.summary()
    finally:
        write_json(out, soak.summary())
        if not started:
            soak.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cuts", type=int, default=1000, help="power cuts to make (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flip-rate", type=float, default=1e-4, help="share of bytes with one bit flipped, each way")
    ap.add_argument("--drop-rate", type=float, default=1e-5, help="share of bytes dropped, each way")
    ap.add_argument("--flash-every", type=int, default=FLASH_EVERY, help="a whole uncut flash every K cycles")
    ap.add_argument("--out", default=None, help="write the summary JSON here")
    ap.add_argument("--flash-dir", default=None, help="the board's flash folder (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    exit_on_signals()
    flash_dir = Path(args.flash_dir) if args.flash_dir else Path(tempfile.mkdtemp(prefix="soak-")) / "flash"
    print(f"soak: {args.cuts} cuts, seed {args.seed}, flips {args.flip_rate}, drops {args.drop_rate}, flash every "
          f"{args.flash_every} cycles, flash folder {flash_dir}", flush=True)
    summary = run_soak(args.cuts, flash_dir, args.seed, args.flip_rate, args.drop_rate, args.flash_every, args.out,
                       log=lambda s: print(s, flush=True))
    print(table(summary), flush=True)
    return 0 if summary["bricks"] == 0 and summary["lost"] == 0 and summary["resurrected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
