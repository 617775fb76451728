"""The shipped ``models/default.wfb``: small, signed by a key boards/virtual.toml trusts, self-test passes."""
from __future__ import annotations

from pathlib import Path

from wearface.firmware.board import load_board
from wearface.firmware.bundle import verify_bundle
from wearface.kernels import nets

REPO = Path(__file__).resolve().parents[3]


def test_default_bundle_boots_on_the_virtual_board():
    data = (REPO / "models" / "default.wfb").read_bytes()
    assert len(data) < 3 * 1024 * 1024
    board = load_board(REPO / "boards" / "virtual.toml")
    b = verify_bundle(data, list(board.public_keys), board.compatible, self_test=True, name="models/default.wfb")
    assert b.embed_net.spec is nets.MODEL_A and b.align_net.spec is nets.ALIGN_NET
    assert b.threshold > 0 and b.golden
    if "celeba" in str(b.manifest["provenance"]).lower():
        assert any("non-commercial" in t for t in b.manifest["data_terms"])


def test_default_bundle_manifest_records_how_its_embedding_net_was_trained(capsys):
    from wearface.host_tools.cli import main

    data = (REPO / "models" / "default.wfb").read_bytes()
    board = load_board(REPO / "boards" / "virtual.toml")
    b = verify_bundle(data, list(board.public_keys), board.compatible, name="models/default.wfb")
    embed = b.manifest["provenance"]["embed"]
    assert embed["kind"] == "checkpoint" and len(embed["sha256"]) == 64
    assert embed["train_config"]["net"] == "A" and embed["results"]["command"].startswith("wearface train")
    assert main(["bundle", "inspect", str(REPO / "models" / "default.wfb")]) == 0
    assert "trained embed: wearface train --net A" in capsys.readouterr().out
