"""``wearface eval`` end to end on a few real LFW pairs with an untrained checkpoint (needs the shared data)."""
from __future__ import annotations

import json

import pytest
import torch

from wearface.host_tools.cli import main
from wearface.host_tools.train.torch_nets import build_torch_net
from wearface.host_tools.train.train import TrainConfig


@pytest.mark.needs_data
def test_eval_prints_accuracy_and_writes_roc_and_json(shared_data, tmp_path, capsys):
    lines = (shared_data / "lfw" / "pairs.txt").read_text().splitlines()
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(["2\t3"] + lines[1:4] + lines[301:304] + lines[601:604] + lines[901:904]) + "\n")
    ckpt = tmp_path / "a.pt"
    torch.manual_seed(0)
    torch.save({"config": {**TrainConfig().__dict__, "net": "A"}, "model": build_torch_net("A").state_dict()}, ckpt)
    rc = main(["eval", str(ckpt), "--lfw", str(shared_data / "lfw"), "--pairs", str(pairs), "--roc", str(tmp_path / "roc.png"),
               "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out
    result = json.loads((tmp_path / "r.json").read_text())
    assert len(result["folds"]) == 2 and 0.0 <= result["mean"] <= 1.0
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_eval_of_a_missing_checkpoint_is_one_line_error(tmp_path, capsys, shared_data):
    rc = main(["eval", str(tmp_path / "nope.pt"), "--lfw", str(shared_data / "lfw")])
    assert rc == 3
    assert "checkpoint missing" in capsys.readouterr().err
