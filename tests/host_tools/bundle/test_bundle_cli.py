"""``wearface keys`` / ``wearface bundle`` through ``cli.main``: outputs and one exit code per failure."""
from __future__ import annotations

import pytest

from wearface.host_tools import cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert cli.main(["keys", "new", str(d / "board")]) == 0
    assert cli.main(["bundle", "build", "-o", str(d / "r.wfb"), "--align", "random", "--embed", "random",
                     "--golden", "1", "--rollback", "3", "--created-at", "2026-01-01T00:00:00+00:00"]) == 0
    return d


def test_keys_new_writes_pem_and_pub_and_show_prints_it(built, capsys):
    assert (built / "board.pem").stat().st_mode & 0o777 == 0o600
    code, out, _ = run(capsys, "keys", "show", str(built / "board.pem"))
    assert code == 0 and out.strip() == (built / "board.pub").read_text().strip()
    code, _, err = run(capsys, "keys", "new", str(built / "board"))
    assert code == 4 and "already exists" in err and len(err.strip().splitlines()) == 1


def test_build_sign_inspect_verify(built, capsys):
    wfb, key = str(built / "r.wfb"), str(built / "board")
    code, _, err = run(capsys, "bundle", "verify", wfb, "--key", key + ".pub", "--compatible", "wearface-virtual")
    assert code == 26 and "unsigned" in err  # BAD_SIGNATURE
    code, out, _ = run(capsys, "bundle", "sign", wfb, "--key", key + ".pem", "-o", str(built / "s.wfb"))
    assert code == 0
    code, out, _ = run(capsys, "bundle", "inspect", str(built / "s.wfb"))
    assert code == 0
    for words in ("net embed: A", "M MACs", "threshold θ = 1.1000", "peak model memory", "board virtual",
                  "rollback counter 3"):
        assert words in out
    ok = ["bundle", "verify", str(built / "s.wfb"), "--key", key + ".pub", "--compatible", "wearface-virtual"]
    code, out, _ = run(capsys, *ok)
    assert code == 0 and "OK" in out and "golden vectors exact" in out
    assert run(capsys, *ok, "--min-rollback", "4")[0] == 30  # ROLLBACK
    assert run(capsys, "bundle", "verify", str(built / "s.wfb"))[0] == 27  # dev key of boards/virtual.toml: UNKNOWN_KEY
    assert run(capsys, *ok[:-1], "acme-watch")[0] == 29  # INCOMPATIBLE_BOARD


def test_damaged_files_give_one_line_and_their_exit_code(built, capsys):
    data = (built / "r.wfb").read_bytes()
    cases = {"trunc.wfb": (data[:5000], 23), "magic.wfb": (b"XXXX" + data[4:], 21),
             "flip.wfb": (data[:100] + bytes([data[100] ^ 1]) + data[101:], 25)}
    for name, (blob, code) in cases.items():
        (built / name).write_bytes(blob)
        got, _, err = run(capsys, "bundle", "inspect", str(built / name))
        assert got == code, (name, err)
        assert len(err.strip().splitlines()) == 1 and name in err
    assert run(capsys, "bundle", "inspect", str(built / "missing.wfb"))[0] == 3


def test_inspect_predicts_latency_from_a_board_speed_figure(built, capsys, tmp_path):
    board = tmp_path / "fast.toml"
    board.write_text('name = "fast"\ncompatible = "wearface-virtual"\n[cpu]\nint8_gmac_per_s = 10.0\n')
    code, out, _ = run(capsys, "bundle", "inspect", str(built / "r.wfb"), "--board", str(board))
    assert code == 0
    line = next(text for text in out.splitlines() if "board fast" in text)
    # model A: 46.82M MACs at 10 GMAC/s = 4.68 ms
    assert "embed 4.68 ms" in line and "cpu.int8_gmac_per_s" in line
