"""The power-cut soak (``bench/soak_power_cuts.py``): its bookkeeping, and ~10 cuts of the real firmware.

The 10-cut run is slow (~1-2 min on the 2-core machine) and runs only with ``WEARFACE_SOAK=1``; the 1,000-cut
run and its figures are in docs/RELIABILITY.md.  Both show the checker can fail: a loss planted behind the
firmware's back (its row deleted from the gallery's SQLite file) is reported.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def load_soak():
    """``bench/soak_power_cuts.py`` as a module (bench/ is no package)."""
    name = "soak_power_cuts"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "soak_power_cuts.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_the_truth_reports_lost_enrolments_lost_crops_and_deletions_that_come_back():
    soak = load_soak()
    truth = soak.Truth()
    truth.acked_enrol("ada", 1)
    truth.acked_enrol("bob", 2)
    truth.acked_enrol("eve", 1)
    truth.acked_delete("eve")
    people = [{"name": "bob", "crops": 1}, {"name": "eve", "crops": 1}, {"name": "zed", "crops": 1}]
    found = truth.check(people)
    assert found["lost"] == [("ada", 1, 0), ("bob", 2, 1)]
    assert found["resurrected"] == ["eve"]
    # an unacked deletion in flight may have happened or not; once seen gone, it must stay gone
    truth = soak.Truth()
    truth.acked_enrol("ada", 1)
    assert truth.check([], in_flight=("ada",)) == {"lost": [], "resurrected": []}
    truth.observe([], in_flight=("ada",))
    assert truth.check([{"name": "ada", "crops": 1}])["resurrected"] == ["ada"]
    # an unacked enrolment that committed is state too: seen once, it must not go away
    truth = soak.Truth()
    truth.observe([{"name": "kim", "crops": 1}])
    assert truth.check([])["lost"] == [("kim", 1, 0)]


def _info(b_state: str, b_reason: str = "", b_sha: str = "s1") -> dict:
    slots = {"A": {"state": "confirmed", "bad_reason": "", "sha256": "s0"},
             "B": {"state": b_state, "bad_reason": b_reason, "sha256": b_sha}}
    return {"state": "running", "trial": False, "confirmed_slot": "A", "slots": slots}


def test_a_slot_rolled_back_twice_with_the_same_bundle_counts_twice():
    looks = load_soak().Rollbacks()
    assert looks.look(_info("confirmed")) == []
    looks.rewritten()  # B gets the bundle; its crash loop ends in a rollback
    assert looks.look(_info("bad", "trial_boots_exhausted")) == ["trial_boots_exhausted"]
    assert looks.look(_info("bad", "trial_boots_exhausted")) == []  # the same rollback, seen again
    looks.rewritten()  # the same bundle into B again, no look while it was pending, rolled back again
    assert looks.look(_info("bad", "trial_boots_exhausted")) == ["trial_boots_exhausted"]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("WEARFACE_SOAK") != "1",
                    reason="the power-cut soak on the real firmware (~1-2 min): set WEARFACE_SOAK=1 to run it")
def test_ten_power_cuts_leave_a_verified_slot_and_every_acked_enrolment_and_a_planted_loss_is_caught(tmp_path):
    soak_mod = load_soak()
    soak = soak_mod.Soak(tmp_path / "flash", seed=7, flash_every=3, log=lambda line: None).start()
    try:
        summary = soak_mod.run_soak(10, tmp_path / "flash", soak=soak)
        assert summary["cuts"] >= 10
        assert (summary["bricks"], summary["lost"], summary["resurrected"]) == (0, 0, 0), summary["anomalies"]
        assert summary["flash_again"] >= 3 and summary["flash_again_failed"] == 0
        with soak.link() as link:
            soak.enrol_uncut(link, "planted")
            soak.check(link)
            assert soak.counts["lost"] == 0
            soak.plant_loss("planted")
            found = soak.check_gallery(link)
        assert [name for name, _, _ in found["lost"]] == ["planted"]
        assert soak.counts["lost"] == 1 and soak.anomalies[-1]["kind"] == "lost"
    finally:
        soak.stop()
