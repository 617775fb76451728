"""Where a bundle came from: the provenance block of its manifest and the threshold a checkpoint carries.

One job: describe the inputs of ``wearface bundle build`` (sha256 of each checkpoint, its training config and
results, the calibration, the build's own arguments) and find the match threshold θ a checkpoint stored.

Nothing of the machine or the moment goes in unless it is an argument (``--created-at`` is recorded as one, its
default "now" included): the same checkpoints, data and arguments give the same bytes, and ``wearface bundle
rebuild`` replays a bundle's recorded arguments to show it (as reproducible-builds does for packages).  The git
commit of the builder's tree is not recorded for that reason: it changes with every commit while the bytes do not.
Reads checkpoints as the dicts the training wing saved; never imports torch or the training wing (the caller
loads them).
"""
from __future__ import annotations

import hashlib
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


#: ``bundle build`` options that ``build_args`` records.  Not recorded: the output path, the signing key (the
#: signature is deterministic Ed25519 over the content) and ``--data`` (where the shared data lies on this
#: machine; the calibration crops are chosen from it by ``--seed``): `bundle rebuild` takes the last two again.
BUILD_OPTIONS = ("align", "embed", "net", "calibration", "method", "threshold", "compatible", "model_version",
                 "rollback", "golden", "seed", "created_at", "cohort", "cohort_k", "mirror_average",
                 "gallery_match", "threshold_by_count")


def build_args(values: dict) -> list[str]:
    """``bundle build``'s arguments as an argv list, in one order, for ``BUILD_OPTIONS`` present in ``values``
    (None, False and empty lists skipped; True gives the bare switch; a list repeats its option).  ``bundle
    rebuild`` parses them back."""
    argv: list[str] = []
    for name in BUILD_OPTIONS:
        value = values.get(name)
        if value is None or value == [] or value is False:
            continue
        if value is True:  # a switch
            argv.append("--" + name.replace("_", "-"))
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            argv += ["--" + name.replace("_", "-"), repr(item) if isinstance(item, float) else str(item)]
    return argv


def bundle_provenance(align: dict, embed: dict, build: list[str] | None = None) -> dict:
    """The manifest's provenance block: both nets', the tool, the build's arguments (``build_args``) when given,
    and the datasets when a net came from a checkpoint."""
    provenance = {"align": align, "embed": embed, "tool": TOOL}
    if build is not None:
        provenance["build_args"] = list(build)
    if "checkpoint" in (align["kind"], embed["kind"]):
        provenance["datasets"] = ["celeba (training, calibration)"]
    return provenance
