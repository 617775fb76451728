"""Where a bundle came from: the provenance block of its manifest and the threshold a checkpoint carries.

One job: describe the inputs of ``wearface bundle build`` (sha256 of each checkpoint, its training config and
results, the calibration, the git commit of the tree, the command that built it) and find the match
threshold θ a checkpoint stored.  Reads checkpoints as the dicts the training wing saved; never imports torch
or the training wing (the caller loads them).
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from .bundle_build import _jsonable

#: The tool recorded in every bundle's provenance.
TOOL = "wearface bundle build"
#: Keys a checkpoint may hold θ (L2 distance) under, in order of preference:
#: ``threshold`` (the bundle manifest's own name; preferred, write this one), ``lfw_threshold`` (older runs
#: stored the LFW-fitted θ under it), ``theta`` (the hinge loss's learned θ, written into every history row and
#: checkpoint by ``host_tools/train/train.py``).  Looked up in ``checkpoint["extra"]`` first, then at its top.
THRESHOLD_KEYS = ("threshold", "lfw_threshold", "theta")


def checkpoint_threshold(checkpoint: dict | None) -> float | None:
    """The match threshold θ a checkpoint dict stores, or None: the first numeric value of
    ``THRESHOLD_KEYS`` in ``checkpoint["extra"]``, then in the checkpoint itself."""
    if checkpoint is None:
        return None
    for holder in (checkpoint.get("extra") or {}, checkpoint):
        for key in THRESHOLD_KEYS:
            value = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, (int, float)):
                return float(value)
    return None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_commit() -> str | None:
    """The short (12 hex digits) commit of the tree the tools run from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def random_net(seed: int) -> dict:
    """Provenance of a random net (``--align random`` / ``--embed random``)."""
    return {"kind": "random", "seed": seed}


def checkpoint_net(path: str | Path, checkpoint: dict, net_name: str, method: str, images: int, source: str) -> dict:
    """Provenance of a net quantized from a checkpoint: file name and sha256, the net, the training config's
    plain values, the step, the calibration (``method`` on ``images`` crops of ``source``), and the results
    the checkpoint recorded in ``extra`` (with the training command) when it has them."""
    config = checkpoint.get("config", {})
    prov = {
        "kind": "checkpoint", "file": Path(path).name, "sha256": sha256_file(path), "net": net_name,
        "train_config": {k: config[k] for k in sorted(config) if isinstance(config[k], (str, int, float, bool))},
        "step": checkpoint.get("step"),
        "calibration": {"method": method, "images": images, "source": source},
    }
    extra = checkpoint.get("extra")
    if isinstance(extra, dict):
        prov["results"] = _jsonable(extra)
    return prov


def bundle_provenance(align: dict, embed: dict) -> dict:
    """The manifest's provenance block: both nets', the git commit, the tool, and the datasets when a net
    came from a checkpoint."""
    provenance = {"align": align, "embed": embed, "git_commit": git_commit(), "tool": TOOL}
    if "checkpoint" in (align["kind"], embed["kind"]):
        provenance["datasets"] = ["celeba (training, calibration)"]
    return provenance
