"""Board files: the shipped ones parse; bad ones give errors naming file, key and expected type."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.firmware.board import Board, boards_dir, load_board, parse_board
from wearface.firmware.errors import BoardFileError

REPO = Path(__file__).resolve().parents[2]
DEV_KEY = (REPO / "keys" / "dev_ed25519.pub").read_text().strip()
MINIMAL = f'name = "b"\ncompatible = "fam"\nmodel = "A"\nframe_budget_ms = 50\npublic_key = "{DEV_KEY}"\n'


def test_shipped_boards_parse_with_their_cpus():
    virtual = load_board(boards_dir() / "virtual.toml")
    assert virtual.compatible == "wearface-virtual" and virtual.serial.device == "pty"
    assert virtual.public_keys == (base64.b64decode(DEV_KEY),)
    a53 = load_board(boards_dir() / "rpi-zero2w.toml")
    assert (a53.cpu.arch, a53.cpu.dotprod, a53.emulation.qemu_cpu, a53.ram_mb) == ("aarch64", False, "cortex-a53", 512)
    a55 = load_board(boards_dir() / "a55-dotprod.toml")
    assert (a55.cpu.dotprod, a55.emulation.qemu_cpu) == (True, "cortex-a76")
    for board in (virtual, a53, a55):
        assert board.model == "A" and board.frame_budget_ms > 0


def test_minimal_board_gets_defaults_and_flash_override(tmp_path):
    board = parse_board(MINIMAL, tmp_path / "b.toml")
    assert board.flash.slot_a == "slot_a.wfb" and board.boot.trial_boots == 3
    assert board.flash_root() == tmp_path / "flash"
    assert board.flash_root(tmp_path / "x") == tmp_path / "x"


@pytest.mark.parametrize("extra, key, words", [
    ('[camera]\nfps = "fast"\n', "camera.fps", "expected a number, found string 'fast'"),
    ('[serial]\nbaud = 1.5\n', "serial.baud", "expected an integer, found number 1.5"),
    ('[cpu]\narch = "armv7"\n', "cpu.arch", "numba has no 32-bit ARM wheels"),
    ('[cpu]\narch = "aarch64"\n', "emulation.qemu_cpu", "missing"),
    ('[camera]\nsource = true\n', "camera.source", "device index (integer) or a string"),
    ('[flash]\nslot_a = "../x"\n', "flash.slot_a", "plain file name"),
    ('[boot]\ntrial_boots = 0\n', "boot.trial_boots", "positive"),
    ('colour = 3\n', "colour", "unknown key"),
    ('[detector]\nscale_factr = 1.2\n', "detector.scale_factr", "unknown key"),
])
def test_bad_values_name_file_key_and_type(extra, key, words):
    with pytest.raises(BoardFileError) as err:
        parse_board(MINIMAL + extra, "boards/bad.toml")
    assert err.value.key == key
    assert str(err.value).startswith(f"boards/bad.toml: {key}: ")
    assert words in str(err.value)


def test_missing_key_and_bad_public_key():
    with pytest.raises(BoardFileError, match="model: missing"):
        parse_board(MINIMAL.replace('model = "A"\n', ""), "b.toml")
    with pytest.raises(BoardFileError, match="public_key: expected a 32-byte"):
        parse_board(MINIMAL.replace(DEV_KEY, base64.b64encode(b"x" * 16).decode()), "b.toml")
    with pytest.raises(BoardFileError, match="no such board file"):
        load_board("/nonexistent/board.toml")


# --- properties: any text and any well-typed table either parse or raise BoardFileError, nothing else

def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


_scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                     st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                     st.text("abcxyz019-_./ ", max_size=12))
_sections = {
    "camera": ["source", "width", "height", "fps", "loop"],
    "serial": ["device", "baud"],
    "cpu": ["arch", "core", "dotprod", "ghz", "cores"],
    "boot": ["trial_boots", "confirm_after_frames"],
    "tracker": ["iou_min", "max_missed_frames", "min_embeddings"],
    "detector": ["scale_factor", "min_neighbors", "min_size_px"],
}


@st.composite
def _board_texts(draw):
    lines = [MINIMAL]
    for section, keys in _sections.items():
        chosen = draw(st.dictionaries(st.sampled_from(keys), _scalars, max_size=3))
        if chosen:
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in chosen.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None)
@given(_board_texts())
def test_any_well_formed_toml_parses_or_raises_board_error(text):
    try:
        board = parse_board(text, "gen.toml")
    except BoardFileError as err:
        assert str(err).startswith("gen.toml: ")
    else:
        assert isinstance(board, Board) and board.frame_budget_ms > 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_parser(text):
    try:
        parse_board(text, "junk.toml")
    except BoardFileError:
        pass


def test_real_hardware_ships_trusting_no_key_and_refuses_every_bundle_until_provisioned(tmp_path):
    from wearface.firmware.bundle import verify_bundle
    from wearface.firmware.errors import BundleError
    from wearface.host_tools.bundle.keys import provision_board_file, write_keypair
    from wearface.host_tools.cli import main

    from .conftest import signed_bundle

    dev_signed = signed_bundle(0)
    for name in ("rpi-zero2w.toml", "a55-dotprod.toml"):
        board = load_board(boards_dir() / name)
        assert board.public_keys == ()  # the dev key's private half is in the repository: never trusted here
        with pytest.raises(BundleError, match="trusts no signing key"):
            verify_bundle(dev_signed, board.public_keys, board.compatible)
    # provisioning: the fleet's own key, written by the host tool; the dev key stays refused
    private, public = write_keypair(tmp_path / "fleet")
    out = tmp_path / "my-a53.toml"
    assert main(["keys", "provision", str(boards_dir() / "rpi-zero2w.toml"), "--key", str(public), "--out", str(out)]) == 0
    mine = load_board(out)
    assert len(mine.public_keys) == 1 and mine.compatible == "wearface-a53" and mine.cpu.core == "cortex-a53"
    with pytest.raises(BundleError, match="not trusted"):
        verify_bundle(dev_signed, mine.public_keys, mine.compatible)
    again = provision_board_file(out, public, tmp_path / "again.toml")  # re-provisioning replaces, never appends
    assert load_board(again).public_keys == mine.public_keys
    with pytest.raises(BoardFileError, match="public_key"):  # no key line at all is still a mistake
        parse_board('name = "b"\ncompatible = "f"\nmodel = "A"\nframe_budget_ms = 50\n', tmp_path / "x.toml")


def test_an_emulated_unprovisioned_board_trusts_the_dev_key_on_its_copy_only(tmp_path):
    from wearface.host_tools.device.emulate import emulated_board_file

    copy = emulated_board_file(boards_dir() / "rpi-zero2w.toml", tmp_path / "flash")
    assert load_board(copy).public_keys == (base64.b64decode(DEV_KEY),)
    assert load_board(boards_dir() / "rpi-zero2w.toml").public_keys == ()
