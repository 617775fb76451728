#!/usr/bin/env bash
# Installs wearface and everything its tests and demo need, on a fresh machine (idempotent).
# torch first, pinned: on these machines 'torch==2.13.0' is a local CPU wheel, while an open
# range would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install -q --disable-pip-version-check torch==2.13.0
fi
$PY -m pip install -q --disable-pip-version-check -e ".[train,test,litert,bench]"
