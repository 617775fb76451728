"""Score normalisation for the board's decision (issue 14, part 3): which rule, chosen on held-out CelebA identities,
names the most enrolled people at a fixed share of strangers named, and what TAR at FAR 1e-3 does it give?

A bundle's embeddings through the exact board path (detect -> int8 align -> int8 embed; ``board_path_eval``):
the held-out identities clean and camera-damaged, a cohort of training identities, and LFW View 2's pair images
(LFW is only reported, never used to choose).  Cached in ``--cache`` (an .npz) so that the rules cost seconds.

Rules (a score; lower = the same person; d = Euclidean distance of unit embeddings; s_k(x) = x's k-th nearest cohort
distance; mu_N(x), sd_N(x) = mean and standard deviation of x's N nearest cohort distances):

* ``distance``: d;
* ``probe_kK``: d / s_K(probe)  (the board's rule since ``1.3-a92``, K = 10);
* ``sym_kK``: d / sqrt(s_K(probe) s_K(enrolled))  (the enrolled image's own cohort distance as well);
* ``asnorm_N``: adaptive symmetric normalisation, ((d - mu_N(p)) / sd_N(p) + (d - mu_N(e)) / sd_N(e)) / 2.

θ is chosen on the *tune* half of the held-out identities (the largest θ naming at most ``--strangers`` of the
tune half's strangers in wearer galleries, the smaller of the clean and damaged choices) and every figure is on the
*report* half (``heldout.tune_report_split``; galleries as ``heldout.open_set``: 40 people x 3 images, 20 trials).
The last columns compare the rules without θ's transfer between the halves: on each half its own θ for 0.5% and 1%
of strangers named, the share of enrolled people named rightly, averaged over the two halves.

    python3 experiments/score_norm.py models/default.wfb --data ../shared/data --cache runs/score_norm_1.7.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from wearface.host_tools.train import evaluate as E
from wearface.host_tools.train import heldout as H


def embed(bundle: str, data: str, board: str, extra_cohort: int) -> dict:
    """The bundle's board-path embeddings: held-out clean/hard, the bundle's cohort, ``extra_cohort`` more
    training identities, LFW pair images (with each pair's row indices, labels and folds)."""
    from wearface.host_tools.train.board_path_eval import heldout_board_path, lfw_board_path

    hb = heldout_board_path(bundle, board, data, progress=True, cohort=extra_cohort)
    lfw = lfw_board_path(bundle, board, Path(data) / "lfw", progress=True)
    index = {k: i for i, k in enumerate(lfw.keys)}
    pairs = lfw.pairs.pairs
    return dict(ids=hb.identities, clean=hb.clean, hard=hb.hard, cohort=np.asarray(lfw.bundle.cohort, np.float32),
                extra_cohort=hb.cohort if hb.cohort is not None else np.zeros((0, hb.clean.shape[1]), np.float32),
                lfw=lfw.emb.astype(np.float32), lfw_a=np.array([index[(p.name1, p.index1)] for p in pairs]),
                lfw_b=np.array([index[(p.name2, p.index2)] for p in pairs]), lfw_same=lfw.pairs.same(),
                lfw_folds=lfw.pairs.folds())


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


class Rule:
    """One score rule: per-embedding statistics against a cohort, and the pair score from them."""

    def __init__(self, name: str, cohort: np.ndarray):
        self.name, self.cohort = name, cohort
        kind, _, arg = name.partition("_")
        self.kind = kind
        self.n = int(arg.lstrip("kN")) if arg else 0

    def stats(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "distance":
            return np.ones(len(emb)), np.zeros(len(emb))
        s = np.sort(_dist(emb, self.cohort), axis=1)
        if self.kind in ("probe", "sym"):
            return s[:, self.n - 1], np.zeros(len(emb))
        top = s[:, : self.n]
        return top.mean(1), np.maximum(top.std(1), 1e-6)

    def score(self, d: np.ndarray, probe: tuple, enrolled: tuple) -> np.ndarray:
        """``d`` (P, G) distances; ``probe`` stats of the P rows, ``enrolled`` of the G columns."""
        (pa, pb), (ea, eb) = probe, enrolled
        return self.combine(d, pa[:, None], pb[:, None], ea[None, :], eb[None, :])

    def combine(self, d, pa, pb, ea, eb):
        """The score from distances and statistics that broadcast together."""
        if self.kind == "distance":
            return d
        if self.kind == "probe":
            return d / pa
        if self.kind == "sym":
            return d / np.sqrt(pa * ea)
        return 0.5 * ((d - pa) / pb + (d - ea) / eb)


def open_set_scores(emb, labels, rule: Rule, people=40, per_person=3, trials=20, seed=0):
    """Per trial (as ``heldout.open_set``): stranger rows' best scores, enrolled probes' best scores and whether
    their best person is their own."""
    stats = rule.stats(emb)
    ids, counts = np.unique(labels, return_counts=True)
    eligible = ids[counts > per_person]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(trials):
        enrolled, gal, owners, probes = H.draw_gallery(rng, labels, eligible, people, per_person)
        strangers = np.flatnonzero(~np.isin(labels, enrolled))

        def best(rows):
            sc = rule.score(_dist(emb[rows], emb[gal]), (stats[0][rows], stats[1][rows]),
                            (stats[0][gal], stats[1][gal]))
            per = np.full((len(rows), people), np.inf)
            for k in range(people):
                per[:, k] = sc[:, owners == k].min(1)
            b = per.argmin(1)
            return b, per[np.arange(len(rows)), b]

        _, s_str = best(strangers)
        b, s_pro = best(probes)
        slot = {pid: k for k, pid in enumerate(enrolled)}
        truth = np.array([slot[p] for p in labels[probes]])
        out.append((s_str, s_pro, b == truth))
    return out


def rates(trials, theta: float) -> tuple[float, float, float]:
    """(strangers named, enrolled named right, enrolled named wrong) at θ, averaged over trials."""
    s = np.mean([np.mean(t[0] < theta) for t in trials])
    r = np.mean([np.mean((t[1] < theta) & t[2]) for t in trials])
    w = np.mean([np.mean((t[1] < theta) & ~t[2]) for t in trials])
    return float(s), float(r), float(w)


def choose(trials, target: float) -> float:
    """The largest θ whose stranger share is <= ``target`` (the scores' own values as candidates)."""
    cands = np.unique(np.concatenate([t[0] for t in trials]))
    ok = [c for c in cands[:: max(1, len(cands) // 4000)] if rates(trials, c)[0] <= target]
    lo = max(ok) if ok else cands[0]
    # refine between the coarse candidate and the next scores
    fine = cands[(cands >= lo)][:4000]
    ok = [c for c in fine if rates(trials, c)[0] <= target]
    return float(max(ok)) if ok else float(lo)


def pair_tar(emb, labels, rule: Rule) -> float:
    """TAR at FAR 1e-3 over all pairs i < j of these embeddings (j the probe)."""
    stats = rule.stats(emb)
    sc = rule.score(_dist(emb, emb), stats, stats).T  # [i, j] with j as probe
    iu = np.triu_indices(len(emb), 1)
    return E.tar_at_far(sc[iu], labels[iu[0]] == labels[iu[1]])


def lfw_tar(z, rule: Rule) -> float:
    emb = z["lfw"]
    a, b = z["lfw_a"], z["lfw_b"]
    sa, sb = rule.stats(emb[a]), rule.stats(emb[b])
    d = np.linalg.norm(emb[a].astype(np.float64) - emb[b], axis=1)
    sc = rule.combine(d, sb[0], sb[1], sa[0], sa[1])  # the second image is the probe, as on the board
    return E.tar_at_far(sc, z["lfw_same"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True)
    ap.add_argument("--board", default="")
    ap.add_argument("--cache", required=True, help="npz of the embeddings (made if absent)")
    ap.add_argument("--extra-cohort", type=int, default=3000, help="training identities embedded for cohort sizes")
    ap.add_argument("--strangers", type=float, default=0.005)
    ap.add_argument("--rules", default="distance,probe_k10,probe_k5,probe_k20,sym_k10,sym_k5,sym_k20,"
                                       "asnorm_N50,asnorm_N100,asnorm_N200")
    ap.add_argument("--cohort", default="bundle", help="'bundle' (its own) or 'extra:N' (N of the extra cohort)")
    args = ap.parse_args()
    cache = Path(args.cache)
    if not cache.exists():
        from wearface.firmware.board import boards_dir

        z = embed(args.bundle, args.data, args.board or str(boards_dir() / "virtual.toml"), args.extra_cohort)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **z)
    z = dict(np.load(cache))
    cohort = z["cohort"] if args.cohort == "bundle" else z["extra_cohort"][: int(args.cohort.split(":")[1])]
    ids = z["ids"]
    tune, report = H.tune_report_split(ids)
    print(f"{args.bundle}: {len(ids)} held-out images, cohort {len(cohort)}; θ at <= {args.strangers:.3%} strangers "
          "on the tune half; figures on the report half (strangers named / named right / named wrong)")
    print(f"{'rule':<12} {'TAR clean':>9} {'TAR dmg':>8} {'LFW TAR':>8}  {'clean':>22}  {'damaged':>22}"
          f"  {'named right at 0.5% / 1% strangers, own θ, clean':>50}  {'damaged':>14}")
    for name in args.rules.split(","):
        rule = Rule(name, cohort)
        theta = min(choose(open_set_scores(z[k][tune], ids[tune], rule), args.strangers) for k in ("clean", "hard"))
        row = []
        for k in ("clean", "hard"):
            s, r, w = rates(open_set_scores(z[k][report], ids[report], rule), theta)
            row.append(f"{100 * s:5.2f} / {100 * r:5.2f} / {100 * w:4.2f}")
        tc, th = (pair_tar(z[k][report], ids[report], rule) for k in ("clean", "hard"))
        oracle = []
        for k in ("clean", "hard"):
            trials = [open_set_scores(z[k][half], ids[half], rule) for half in (tune, report)]
            oracle.append(" / ".join(f"{100 * np.mean([rates(t, choose(t, f))[1] for t in trials]):5.2f}"
                                     for f in (0.005, 0.01)))
        print(f"{name:<12} {100 * tc:8.2f}% {100 * th:7.2f}% {100 * lfw_tar(z, rule):7.2f}%  {row[0]:>22}  {row[1]:>22}"
              f"  {oracle[0]:>50}  {oracle[1]:>14}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
