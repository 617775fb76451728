"""A/B slots and boot: atomic table, trial boots, confirmation, rollback, bad bundles, recovery."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearface.firmware.boot import RECOVERY, RUNNING
from wearface.firmware.errors import BundleError, BundleReason, SlotError
from wearface.firmware.slots import SLOT_STATES, SlotStore, SlotTable

from .conftest import Flasher, make_board, signed_bundle


def test_fresh_board_is_in_recovery_and_accepts_a_flash(flasher):
    result = flasher.reboot()
    assert result.state == RECOVERY and flasher.names()[-1] == "boot.recovery"
    info = flasher.write(signed_bundle(1))
    assert info["slot"] == "A" and info["state"] == "pending"
    result = flasher.reboot()
    assert (result.state, result.slot, result.trial) == (RUNNING, "A", True)
    assert flasher.names() == ["boot.verified", "boot.trial", "boot.booted"]
    assert flasher.booter.confirm(frames=30)
    assert flasher.store.table.confirmed == "A" and flasher.store.table.pending is None
    assert flasher.reboot().trial is False


def _confirmed_a(flasher, seed=1, rollback=0):
    flasher.write(signed_bundle(seed, rollback))
    flasher.reboot()
    flasher.booter.confirm(30)


def test_new_bundle_goes_to_the_inactive_slot_and_confirms(flasher):
    _confirmed_a(flasher)
    assert flasher.write(signed_bundle(2))["slot"] == "B"
    result = flasher.reboot()
    assert (result.slot, result.trial) == ("B", True)
    # during the trial the running slot is not writable, and the fallback A is never overwritten
    with pytest.raises(SlotError) as err:
        flasher.store.begin_write(10, bytes(32))
    assert err.value.reason == "slot_busy"
    flasher.booter.confirm(30)
    assert flasher.store.table.confirmed == "B"
    assert flasher.store.write_target() == "A"


def test_unconfirmed_trial_boots_roll_back_to_the_confirmed_slot(tmp_path):
    board = make_board(tmp_path, boot={"trial_boots": 2})
    flasher = Flasher(board, board.flash_root())
    _confirmed_a(flasher)
    flasher.write(signed_bundle(2))
    for attempt in (1, 2):  # each boot of B dies before confirmation (e.g. a crash loop)
        result = flasher.reboot()
        assert (result.slot, result.trial) == ("B", True)
        assert flasher.store.table.boot_attempts == attempt
    result = flasher.reboot()
    assert (result.state, result.slot, result.trial) == (RUNNING, "A", False)
    bad = flasher.events.named("boot.slot_bad")[0]
    assert (bad["slot"], bad["reason"]) == ("B", "trial_boots_exhausted")
    rollback = flasher.events.named("boot.rollback")[0]
    assert (rollback["from_slot"], rollback["to_slot"]) == ("B", "A")
    assert flasher.store.record("B").state == "bad"


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_corrupt_or_truncated_bundles_are_rejected_at_flash_end(flasher, damage):
    _confirmed_a(flasher)
    data = bytearray(signed_bundle(2))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":
        data[len(data) // 3] ^= 0x40
    else:
        data = bytearray(os.urandom(5000))
    with pytest.raises(BundleError):
        flasher.write(bytes(data))
    assert flasher.store.record("B").state == "bad"
    assert flasher.events.named("flash.rejected")
    result = flasher.reboot()
    assert (result.slot, result.trial) == ("A", False)


def test_bundle_corrupted_on_flash_after_acceptance_never_boots(flasher):
    _confirmed_a(flasher)
    flasher.write(signed_bundle(2))
    path = flasher.store.paths["B"]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    result = flasher.reboot()
    assert (result.slot, result.trial) == ("A", False)
    bad = flasher.events.named("boot.slot_bad")[0]
    assert (bad["slot"], bad["reason"]) == ("B", "image_hash_mismatch")
    assert flasher.events.named("boot.rollback")


def test_unsigned_wrong_board_and_rollback_bundles_are_refused(flasher):
    _confirmed_a(flasher, seed=1, rollback=5)
    cases = [
        (signed_bundle(3, 5, key_path=None), BundleReason.BAD_SIGNATURE),
        (signed_bundle(4, 5, compatible=("wearface-other",)), BundleReason.INCOMPATIBLE_BOARD),
        (signed_bundle(5, 4), BundleReason.ROLLBACK),
    ]
    for data, reason in cases:
        with pytest.raises(BundleError) as err:
            flasher.write(data)
        assert err.value.reason in (reason, BundleReason.UNKNOWN_KEY), err.value


def test_recovery_when_every_slot_is_bad_then_a_flash_recovers(flasher):
    flasher.write(signed_bundle(1))
    flasher.store.paths["A"].write_bytes(b"not a bundle")
    result = flasher.reboot()
    assert result.state == RECOVERY
    assert flasher.names()[-2:] == ["boot.slot_bad", "boot.recovery"]
    flasher.write(signed_bundle(2))
    assert flasher.reboot().state == RUNNING


def test_resumed_write_continues_at_the_recorded_offset(flasher):
    data = signed_bundle(1)
    digest = hashlib.sha256(data).digest()
    part = flasher.store.begin_write(len(data), digest)
    offset = flasher.store.write_chunk(0, data[:10000])
    with pytest.raises(SlotError) as err:
        flasher.store.write_chunk(0, data[:10])
    assert err.value.reason == "offset_mismatch" and err.value.offset == 10000
    flasher.open()  # the process restarts
    part = flasher.store.begin_write(len(data), digest)
    assert (part.slot, part.offset) == ("A", offset)
    flasher.store.write_chunk(part.offset, data[part.offset:])
    assert flasher.booter.accept_written()["slot"] == "A"
    # a different image starts over at 0
    other = signed_bundle(2)
    assert flasher.store.begin_write(len(other), hashlib.sha256(other).digest()).offset == 0


def test_wrong_announced_hash_is_refused_and_restarts(flasher):
    data = signed_bundle(1)
    flasher.store.begin_write(len(data), hashlib.sha256(b"other").digest())
    flasher.store.write_chunk(0, data)
    with pytest.raises(SlotError) as err:
        flasher.booter.accept_written()
    assert err.value.reason == "hash_mismatch"
    assert flasher.store.writing().offset == 0


def test_table_write_is_atomic_and_a_corrupt_table_is_rebuilt(flasher):
    _confirmed_a(flasher)
    table_path = flasher.store.table_path
    before = table_path.read_bytes()
    # a crash between writing the temp file and the rename leaves the old table in force
    table_path.with_name(table_path.name + ".tmp").write_bytes(b'{"half": ')
    flasher.open()
    assert flasher.store.table.confirmed == "A" and table_path.read_bytes() == before
    assert not table_path.with_name(table_path.name + ".tmp").exists()
    # an unreadable table (bit rot) is rebuilt from the slot images; boot verifies them
    table_path.write_bytes(b"\x00garbage")
    result = flasher.reboot()
    assert (result.state, result.slot) == (RUNNING, "A")
    assert flasher.names()[0] == "boot.table_rebuilt"
    json.loads(table_path.read_text())


_WRITER = r"""
import hashlib, sys, time
from wearface.firmware.board import load_board
from wearface.firmware.slots import SlotStore
board = load_board(sys.argv[1]); data = open(sys.argv[2], "rb").read()
store = SlotStore.for_board(board, board.flash_root())
part = store.begin_write(len(data), hashlib.sha256(data).digest())
offset = part.offset
while offset < len(data):
    offset = store.write_chunk(offset, data[offset:offset + 4096])
    print(offset, flush=True)
    time.sleep(0.002)
print("done", flush=True)
"""


def test_power_loss_during_a_slot_write_keeps_the_old_slot_and_resumes(tmp_path):
    board = make_board(tmp_path)
    flasher = Flasher(board, board.flash_root())
    _confirmed_a(flasher)
    new = signed_bundle(2)
    image = tmp_path / "new.wfb"
    image.write_bytes(new)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, board.path, str(image)], stdout=subprocess.PIPE, text=True)
    last = 0
    for line in proc.stdout:
        last = int(line)
        if last >= len(new) // 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last >= len(new) // 3, "the writer died before it was killed"
    # power back: the confirmed slot boots, untouched
    result = flasher.reboot()
    assert (result.state, result.slot, result.trial) == (RUNNING, "A", False)
    assert flasher.store.record("B").state == "writing"
    # the host resumes where the flash is known good (at or after the last offset it saw)
    part = flasher.store.begin_write(len(new), hashlib.sha256(new).digest())
    assert part.slot == "B" and last <= part.offset < len(new)
    flasher.store.write_chunk(part.offset, new[part.offset:])
    flasher.booter.accept_written()
    assert flasher.reboot().slot == "B"


_json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text("ABpendingx", max_size=8),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abs", max_size=3),
                                                                                         inner, max_size=3),
                            max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), _json_values.map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda fields: json.dumps(_mutated_table(fields)).encode(),
                           st.dictionaries(st.sampled_from(["state", "size_bytes", "sha256", "active", "pending",
                                                            "boot_attempts", "format", "slots"]), _json_values,
                                           max_size=3))))
def test_any_slot_table_bytes_open_as_a_valid_table(tmp_path, raw):
    flash = tmp_path / "flash"
    flash.mkdir(exist_ok=True)
    (flash / "slots.json").write_bytes(raw)
    store = SlotStore(flash)
    table = store.table
    assert table.active in (None, "A", "B") and all(r.state in SLOT_STATES for r in table.slots.values())
    assert isinstance(table.boot_attempts, int)


def _mutated_table(fields: dict) -> dict:
    """A valid table JSON with some keys (top level and slot A) replaced by arbitrary values."""
    data = SlotTable().to_json()
    slot_a = data["slots"]["A"]
    for key, value in fields.items():
        if key in slot_a:
            slot_a[key] = value
        elif key in data:
            data[key] = value
    return data
