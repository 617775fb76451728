"""LFW through the exact board path (detect -> int8 align -> int8 embed) with the shipped bundle."""
from pathlib import Path

import numpy as np
import pytest

from wearface.host_tools.train import data as D
from wearface.host_tools.train import evaluate as E
from wearface.host_tools.train.board_path_eval import accept_at_theta, evaluate_bundle_board_path, rule_scores, subset_pairs

REPO = Path(__file__).resolve().parents[3]


def test_subset_keeps_every_fold_and_both_halves():
    pairs = D.parse_pairs("2\t2\n" + "".join(
        f"a{f}\t1\t2\n" if i < 2 else f"a{f}\t1\tb{f}\t1\n" for f in range(2) for i in range(4)), "t")
    sub = subset_pairs(pairs, 1)
    assert sub.n_per_half == 1 and len(sub.pairs) == 4
    assert list(sub.folds()) == [0, 0, 1, 1] and list(sub.same()) == [True, False, True, False]


def test_accept_at_theta_applies_the_bundles_rule_with_the_second_image_as_probe():
    pairs = D.parse_pairs("1\t2\n" + "a\t1\t2\nb\t1\t2\n" + "a\t1\tb\t1\nc\t1\td\t1\n", "t")
    keys = D.pair_images(pairs)
    at = {k: i for i, k in enumerate(keys)}
    emb = np.zeros((len(keys), 2))
    for key, xy in {("a", 1): (0, 0), ("a", 2): (0.3, 0), ("b", 1): (5, 0), ("b", 2): (5, 0.9),
                    ("c", 1): (10, 0), ("d", 1): (10, 0.5)}.items():
        emb[at[key]] = xy
    # distances: matched 0.3, 0.9; mismatched 5.0, 0.5
    assert accept_at_theta(emb, keys, pairs, 0.6) == (0.5, 0.5)
    assert accept_at_theta(emb, keys, pairs, 1.0) == (1.0, 0.5)
    # the probes' nearest cohort points lie 2.0-2.9 away, but d's 0.25 away: (c, d) scores 0.5 / 0.25 = 2.0
    cohort = np.array([[0.0, 2.0], [5.0, 2.9], [10.0, 0.75]])
    same, different = accept_at_theta(emb, keys, pairs, 1.0, cohort, 1)
    assert same == 1.0 and different == 0.0
    # scored by that rule, the pairs come apart completely (TAR 1 at FAR 0); by distance alone they do not
    want = [0.3 / np.hypot(0.3, 2.0), 0.9 / 2.0, 5.0 / 2.9, 2.0]
    assert rule_scores(emb, keys, pairs, cohort, 1).tolist() == pytest.approx(want)
    assert E.tar_at_far(rule_scores(emb, keys, pairs, cohort, 1), pairs.same(), 0.0) == 1.0
    assert E.tar_at_far(rule_scores(emb, keys, pairs), pairs.same(), 0.0) == 0.5


def test_shipped_bundle_tells_lfw_pairs_apart_through_the_board_path(shared_data):
    out = evaluate_bundle_board_path(REPO / "models" / "default.wfb", REPO / "boards" / "virtual.toml",
                                     shared_data / "lfw", per_fold_half=10)
    assert len(out.result.accuracies) == 10 and out.images > 250
    assert out.undetected <= 0.05 * out.images
    assert np.mean(out.result.accuracies) >= 0.70  # random nets score ~0.5
    assert 0 <= out.accept_different <= out.accept_same <= 1 and out.theta > 0 and "θ" in out.rule
    assert 0 <= out.tar_at_far_1e3_rule <= 1 and "scored by that rule" in out.at_theta_summary()


@pytest.mark.slow
# no --cohort: the bundle's own rule (the shipped bundle carries a cohort since 1.3-a92); --cohort N: N training
# identities through the board path, whatever the bundle carries
@pytest.mark.parametrize("extra, rule, theta_max", [([], "cohort-normalised (the bundle's)", 8.0),
                                                    (["--cohort", "20", "--cohort-k", "3"], "cohort-normalised: ", 8.0)])
def test_eval_heldout_reports_open_set_figures_for_the_shipped_bundle(shared_data, tmp_path, capsys, extra, rule,
                                                                      theta_max):
    import json

    from wearface.host_tools.cli import main

    out = tmp_path / "heldout.json"
    assert main(["eval-heldout", str(REPO / "models" / "default.wfb"), "--data", str(shared_data), "--identities", "24",
                 "--people", "2", "--per-person", "2", "--json", str(out), "--no-progress", *extra]) == 0
    figures = json.loads(out.read_text())
    assert figures["rule"].startswith(rule)
    assert 0 < figures["theta"] < theta_max and figures["undetected"]["of"] > 48
    for name in ("clean", "damaged"):
        o = figures[name]["open_set"]
        assert o["people"] == 2 and o["strangers"] > 0 and 0 <= o["strangers_named"] <= 1
        assert figures[name]["verification"]["balanced_accuracy"] > 0.6  # a random net scores ~0.5
    assert "strangers named" in capsys.readouterr().out


@pytest.mark.slow
def test_a_bundle_built_with_a_cohort_carries_it_rebuilds_and_eval_heldout_decides_with_it(shared_data, tmp_path,
                                                                                           capsys):
    import json

    from wearface.firmware.bundle import read_bundle
    from wearface.host_tools.cli import main

    key = REPO / "keys" / "dev_ed25519.pem"
    out = tmp_path / "cohort.wfb"
    assert main(["bundle", "build", "-o", str(out), "--align", "random", "--embed", "random", "--data", str(shared_data),
                 "--cohort", "12", "--cohort-k", "3", "--threshold", "0.9", "--compatible", "wearface-virtual",
                 "--key", str(key), "--created-at", "2026-01-01T00:00:00+00:00"]) == 0
    bundle = read_bundle(out.read_bytes())
    assert bundle.threshold_metric == "l2_cohort" and bundle.cohort.shape == (12, 128) and bundle.cohort_k == 3
    assert bundle.manifest["provenance"]["build_args"][-4:] == ["--cohort", "12", "--cohort-k", "3"]
    # the cohort is embedded by the bundle's own nets through the board path: a rebuild gives the same bytes
    assert main(["bundle", "rebuild", str(out), "-o", str(tmp_path / "again.wfb"), "--key", str(key),
                 "--data", str(shared_data)]) == 0
    figures = tmp_path / "heldout.json"
    assert main(["eval-heldout", str(out), "--data", str(shared_data), "--identities", "24", "--people", "2",
                 "--per-person", "2", "--json", str(figures), "--no-progress"]) == 0
    assert json.loads(figures.read_text())["rule"].startswith("cohort-normalised (the bundle's)")
    assert json.loads(figures.read_text())["rule"].endswith("of its cohort of 12 < θ, k = 3")
    # several gallery shapes in one run, the faces embedded once: each shape's figures as its own run gives them
    one = json.loads(figures.read_text())
    both = tmp_path / "both.json"
    assert main(["eval-heldout", str(out), "--data", str(shared_data), "--identities", "24", "--people", "2",
                 "--per-person", "2", "1", "--theta", str(one["theta"]), "0.5", "--json", str(both), "--no-progress"]) == 0
    shapes = json.loads(both.read_text())["by_per_person"]
    assert sorted(shapes) == ["1", "2"] and shapes["1"]["theta"] == 0.5 and shapes["1"]["per_person"] == 1
    assert shapes["2"]["clean"] == one["clean"] and shapes["2"]["damaged"] == one["damaged"]
    assert shapes["1"]["clean"]["open_set"]["per_person"] == 1 and shapes["2"]["theta_from"] == "given"
    capsys.readouterr()
    assert main(["bundle", "build", "-o", str(tmp_path / "x.wfb"), "--align", "random", "--embed", "random",
                 "--cohort", "12"]) != 0  # no --data, no --threshold
    assert "a cohort needs" in capsys.readouterr().err and not (tmp_path / "x.wfb").exists()


@pytest.mark.parametrize("extra, complaint", [(["--per-person", "1", "2", "--theta", "0.5", "0.6", "0.7"], "3 --theta values"),
                                              (["--per-person", "0"], "need counts >= 1")])
def test_eval_heldout_refuses_mismatched_gallery_shapes_before_any_work(tmp_path, capsys, extra, complaint):
    from wearface.host_tools.cli import main

    # checked before the bundle or the data is read: neither exists here
    assert main(["eval-heldout", str(tmp_path / "none.wfb"), "--data", str(tmp_path / "nowhere"), *extra]) != 0
    assert complaint in capsys.readouterr().err
