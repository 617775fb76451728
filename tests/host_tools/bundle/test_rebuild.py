"""Reproducible bundles: `bundle build` records its arguments, `bundle rebuild` replays them to the same bytes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wearface.firmware.bundle import read_bundle
from wearface.host_tools.cli import main

REPO = Path(__file__).resolve().parents[3]
KEY = str(REPO / "keys" / "dev_ed25519.pem")


def _build_random(path: Path, *extra: str) -> None:
    assert main(["bundle", "build", "-o", str(path), "--align", "random", "--embed", "random", "--key", KEY,
                 "--model-version", "repro", *extra]) == 0


def test_a_bundle_records_its_build_arguments_and_rebuilds_to_the_same_bytes(tmp_path, capsys):
    _build_random(tmp_path / "a.wfb", "--seed", "7")  # no --created-at: "now" is recorded as an argument
    args = read_bundle((tmp_path / "a.wfb").read_bytes()).manifest["provenance"]["build_args"]
    assert "--created-at" in args and "--seed" in args and "--key" not in args
    assert "git_commit" not in read_bundle((tmp_path / "a.wfb").read_bytes()).manifest["provenance"]
    assert main(["bundle", "rebuild", str(tmp_path / "a.wfb"), "-o", str(tmp_path / "b.wfb"), "--key", KEY]) == 0
    assert (tmp_path / "a.wfb").read_bytes() == (tmp_path / "b.wfb").read_bytes()
    assert "identical" in capsys.readouterr().out


def test_rebuild_says_when_the_bytes_differ(tmp_path, capsys):
    _build_random(tmp_path / "a.wfb")
    assert main(["bundle", "rebuild", str(tmp_path / "a.wfb"), "-o", str(tmp_path / "b.wfb")]) == 1  # unsigned
    assert "DIFFERENT" in capsys.readouterr().out


def test_rebuild_refuses_a_bundle_without_recorded_arguments(tmp_path):
    from wearface.host_tools.bundle import bundle_build as bb

    rnd = bb.random_qnet
    from wearface.kernels import nets

    data = bb.build_bundle(rnd(nets.ALIGN_NET, 0), rnd(nets.MODEL_A, 1), 1.1, ["wearface-virtual"], "old", 0,
                           {"tool": "older"}, bb.golden_inputs(rnd(nets.ALIGN_NET, 0), rnd(nets.MODEL_A, 1), 1, 0),
                           created_at="2026-01-01T00:00:00+00:00")
    (tmp_path / "old.wfb").write_bytes(data)
    assert main(["bundle", "rebuild", str(tmp_path / "old.wfb"), "-o", str(tmp_path / "b.wfb")]) == 3


def test_the_shipped_default_bundle_rebuilds_to_its_own_digest(tmp_path, shared_data):
    shipped = REPO / "models" / "default.wfb"
    args = read_bundle(shipped.read_bytes()).manifest["provenance"].get("build_args")
    assert args, "models/default.wfb records no build arguments: rebuild it with `wearface bundle build`"
    if not all((REPO / p).is_file() for p in (args[args.index("--align") + 1], args[args.index("--embed") + 1])):
        pytest.fail(f"the checkpoints models/default.wfb was built from are not in the repository: {args}")
    import os

    cwd = os.getcwd()
    os.chdir(REPO)  # the recorded checkpoint paths are relative to the repository
    try:
        rc = main(["bundle", "rebuild", str(shipped), "-o", str(tmp_path / "again.wfb"), "--key", KEY,
                   "--data", str(shared_data)])
    finally:
        os.chdir(cwd)
    digest = hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert rc == 0 and hashlib.sha256((tmp_path / "again.wfb").read_bytes()).hexdigest() == digest


def test_provenance_with_non_finite_numbers_becomes_strict_json():
    # a GPU run's history had val_loss = NaN: the build failed in json.dumps(allow_nan=False)
    from wearface.host_tools.bundle.bundle_build import _jsonable

    assert _jsonable({"history": [{"val_loss": float("nan"), "x": float("inf"), "ok": 1.5}]}) == \
        {"history": [{"val_loss": None, "x": None, "ok": 1.5}]}


def test_a_mirror_average_build_records_its_switch_and_rebuilds_to_the_same_bytes(tmp_path, capsys):
    _build_random(tmp_path / "m.wfb", "--mirror-average", "--created-at", "2026-01-01T00:00:00+00:00")
    _build_random(tmp_path / "p.wfb", "--created-at", "2026-01-01T00:00:00+00:00")
    mirrored, plain = (read_bundle((tmp_path / n).read_bytes()) for n in ("m.wfb", "p.wfb"))
    assert mirrored.mirror_average and mirrored.manifest["mirror_average"] is True
    assert "mirror_average" not in plain.manifest and not plain.mirror_average  # bundles without it: bytes as before
    assert "--mirror-average" in mirrored.manifest["provenance"]["build_args"]
    assert "--mirror-average" not in plain.manifest["provenance"]["build_args"]
    assert mirrored.embedding_space != plain.embedding_space
    assert main(["bundle", "rebuild", str(tmp_path / "m.wfb"), "-o", str(tmp_path / "again.wfb"), "--key", KEY]) == 0
    assert (tmp_path / "again.wfb").read_bytes() == (tmp_path / "m.wfb").read_bytes()
    capsys.readouterr()
    assert main(["bundle", "inspect", str(tmp_path / "m.wfb")]) == 0
    assert "mirror_average" in capsys.readouterr().out


def test_a_mean_match_build_records_its_choice_and_rebuilds_to_the_same_bytes(tmp_path, capsys):
    _build_random(tmp_path / "m.wfb", "--gallery-match", "mean", "--created-at", "2026-01-01T00:00:00+00:00",
                  "--threshold-by-count", "0.76", "--threshold-by-count", "0.74")
    _build_random(tmp_path / "p.wfb", "--gallery-match", "nearest", "--created-at", "2026-01-01T00:00:00+00:00")
    _build_random(tmp_path / "d.wfb", "--created-at", "2026-01-01T00:00:00+00:00")
    mean, plain = (read_bundle((tmp_path / n).read_bytes()) for n in ("m.wfb", "p.wfb"))
    assert mean.gallery_match == "mean" and mean.manifest["gallery_match"] == "mean"
    assert (tmp_path / "p.wfb").read_bytes() == (tmp_path / "d.wfb").read_bytes()  # the default: bytes as before
    assert "gallery_match" not in plain.manifest and "--gallery-match" not in plain.manifest["provenance"]["build_args"]
    assert mean.manifest["provenance"]["build_args"][-6:] == ["--gallery-match", "mean", "--threshold-by-count",
                                                              "0.76", "--threshold-by-count", "0.74"]
    assert mean.threshold_by_count == (0.76, 0.74)
    assert mean.embedding_space == plain.embedding_space
    assert main(["bundle", "rebuild", str(tmp_path / "m.wfb"), "-o", str(tmp_path / "again.wfb"), "--key", KEY]) == 0
    assert (tmp_path / "again.wfb").read_bytes() == (tmp_path / "m.wfb").read_bytes()
    capsys.readouterr()
    assert main(["bundle", "inspect", str(tmp_path / "m.wfb")]) == 0
    assert "mean embedding" in capsys.readouterr().out
