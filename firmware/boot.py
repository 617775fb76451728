"""Boot: choose a slot, verify its bundle, count trial boots, confirm or roll back; never brick.

One job: the boot decision.  Order of preference (MCUboot's "test" image / RAUC's boot attempts):

1. the *pending* slot, if it has trial boots left: verified (image hash, then ``verify_bundle``:
   signature, compatible family, anti-rollback counter, golden vectors) and booted on trial — the trial
   boot is counted on the flash *before* the loop starts, so a crash during the trial counts too;
2. else the *confirmed* slot (the last one that ran healthily), then the other slot if it is also
   confirmed (an older image, still above the anti-rollback floor);
3. else the *recovery* state: no model and no loop, but the serial server runs and accepts a flash.

A slot that fails verification or uses up its trial boots is marked bad with the reason.  A trial slot is
confirmed by ``confirm`` once the loop has run ``boot.confirm_after_frames`` healthy frames.  Every
decision is published as an event (``events.BOOT_*``) and so lands in the log file too.

Must not import OpenCV or torch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import events as ev
from .errors import BundleError
from .slots import CONFIRMED, SlotStore, other

RUNNING = "running"
RECOVERY = "recovery"

#: verify(image bytes, min_rollback) -> Bundle; raises BundleError
Verifier = Callable[[bytes, int], Any]


def bundle_verifier(board) -> Verifier:
    """The real verifier for ``board``: signature against its public keys, its ``compatible``, anti-rollback,
    and the bundle's golden-vector self-test."""
    from .bundle import verify_bundle

    def verify(data: bytes, min_rollback: int):
        return verify_bundle(data, list(board.public_keys), board.compatible, min_rollback, self_test=True)
    return verify


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a verification failure: the BundleReason's name in lower case, or the class."""
    if isinstance(exc, BundleError):
        return exc.reason.name.lower(), str(exc)
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason, str(exc)
    return f"verify_failed_{type(exc).__name__}", str(exc)


@dataclass
class BootResult:
    """What booted: ``state`` RUNNING with ``slot`` and ``bundle``, or RECOVERY with ``reason``."""

    state: str
    slot: Optional[str] = None
    bundle: Any = None
    trial: bool = False
    reason: str = ""


class Booter:
    """Boot decisions for one board over one ``SlotStore``; decisions go to ``bus``."""

    def __init__(self, board, store: SlotStore, bus: ev.EventBus, verify: Verifier | None = None):
        self.board = board
        self.store = store
        self.bus = bus
        self.verify = verify or bundle_verifier(board)
        self.result: BootResult | None = None

    def _try(self, slot: str):
        """Verify ``slot``; returns its Bundle, or marks it bad (with an event) and returns None."""
        rec = self.store.record(slot)
        data = self.store.read_image(slot)
        if not data:
            reason, detail = "image_missing", f"slot {slot} has no image on the flash"
        elif rec.sha256 and hashlib.sha256(data).hexdigest() != rec.sha256:
            reason, detail = "image_hash_mismatch", (f"slot {slot}: the {len(data)}-byte image does not match the "
                                                     f"SHA-256 recorded when it was written (flash corruption?)")
        else:
            try:
                bundle = self.verify(data, self.store.table.min_rollback)
            except Exception as exc:  # noqa: BLE001 - any failure makes the slot unbootable, never the board
                reason, detail = failure_reason(exc)
            else:
                if rec.model_version != str(bundle.model_version) or rec.rollback_counter != bundle.rollback_counter:
                    rec.model_version = str(bundle.model_version)
                    rec.rollback_counter = int(bundle.rollback_counter)
                    rec.embedding_space = str(bundle.embedding_space)
                    self.store.save()
                self.bus.publish(ev.BOOT_VERIFIED, slot=slot, model_version=str(bundle.model_version),
                                 rollback_counter=int(bundle.rollback_counter))
                return bundle
        self.store.mark_bad(slot, reason)
        self.bus.publish(ev.BOOT_SLOT_BAD, slot=slot, reason=reason, detail=detail)
        return None

    def boot(self) -> BootResult:
        """Choose, verify and record the slot to run (see the module docstring)."""
        store, table = self.store, self.store.table
        if store.recovered_from:
            self.bus.publish(ev.BOOT_TABLE_REBUILT, reason=store.recovered_from)
            store.recovered_from = None
            store.save()
        failed_pending: tuple[str, str] | None = None
        if table.pending is not None:
            slot = table.pending
            limit = self.board.boot.trial_boots
            if table.boot_attempts >= limit:
                reason = "trial_boots_exhausted"
                store.mark_bad(slot, reason)
                self.bus.publish(ev.BOOT_SLOT_BAD, slot=slot, reason=reason,
                                 detail=f"slot {slot} was not confirmed within {limit} trial boots")
                failed_pending = (slot, reason)
            else:
                bundle = self._try(slot)
                if bundle is not None:
                    attempt = store.start_trial(slot)
                    self.bus.publish(ev.BOOT_TRIAL, slot=slot, attempt=attempt, max_attempts=limit)
                    return self._booted(BootResult(RUNNING, slot, bundle, trial=True))
                failed_pending = (slot, store.record(slot).bad_reason)

        candidates = []
        if table.confirmed is not None:
            candidates.append(table.confirmed)
        for slot in (table.confirmed and other(table.confirmed), "A", "B"):
            if slot and slot not in candidates and store.record(slot).state == CONFIRMED:
                candidates.append(slot)
        for slot in candidates:
            if store.record(slot).state != CONFIRMED:
                continue
            bundle = self._try(slot)
            if bundle is not None:
                if table.confirmed != slot:
                    table.confirmed = slot
                store.set_active(slot)
                store.save()
                if failed_pending is not None:
                    self.bus.publish(ev.BOOT_ROLLBACK, from_slot=failed_pending[0], to_slot=slot,
                                     reason=failed_pending[1])
                return self._booted(BootResult(RUNNING, slot, bundle, trial=False))

        store.set_active(None)
        reason = ("no slot holds a bundle" if all(store.record(s).state == "empty" for s in ("A", "B"))
                  else "no slot holds a valid bundle")
        self.bus.publish(ev.BOOT_RECOVERY, reason=reason)
        self.result = BootResult(RECOVERY, reason=reason)
        return self.result

    def _booted(self, result: BootResult) -> BootResult:
        b = result.bundle
        self.bus.publish(ev.BOOT_BOOTED, slot=result.slot, state=RUNNING, trial=result.trial,
                         model_version=str(b.model_version), embedding_space=str(b.embedding_space))
        self.result = result
        return result

    def confirm(self, frames: int) -> bool:
        """The trial slot ran ``frames`` healthy frames: confirm it.  Returns True if something changed."""
        r = self.result
        if r is None or r.state != RUNNING or not r.trial:
            return False
        self.store.confirm(r.slot)
        r.trial = False
        self.bus.publish(ev.BOOT_CONFIRMED, slot=r.slot, frames=frames)
        return True

    def accept_written(self) -> dict:
        """flash_end: the written image must match its announced hash and pass ``verify`` (signature,
        compatible, anti-rollback, golden vectors); then the slot is *pending* and boots on trial at the
        next reboot.  A failing image marks the slot bad and raises the verifier's error (BundleError)."""
        slot, data = self.store.finish_write()
        try:
            bundle = self.verify(data, self.store.table.min_rollback)
        except Exception as exc:
            reason, detail = failure_reason(exc)
            self.store.mark_bad(slot, reason)
            self.bus.publish(ev.FLASH_REJECTED, slot=slot, reason=reason, detail=detail)
            raise
        self.store.mark_pending(slot, model_version=str(bundle.model_version),
                                rollback_counter=int(bundle.rollback_counter),
                                embedding_space=str(bundle.embedding_space))
        self.bus.publish(ev.FLASH_ACCEPTED, slot=slot, model_version=str(bundle.model_version),
                         rollback_counter=int(bundle.rollback_counter))
        return {"slot": slot, "state": "pending", "model_version": str(bundle.model_version),
                "rollback_counter": int(bundle.rollback_counter), "embedding_space": str(bundle.embedding_space),
                "size_bytes": len(data), "trial_boots": self.board.boot.trial_boots}

    def fail_running(self, reason: str, detail: str) -> None:
        """The booted slot could not start its loop (e.g. the model would not load): mark it bad."""
        r = self.result
        if r is None or r.slot is None:
            return
        self.store.mark_bad(r.slot, reason)
        self.bus.publish(ev.BOOT_SLOT_BAD, slot=r.slot, reason=reason, detail=detail)
        self.store.set_active(None)
