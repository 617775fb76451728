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
$PY -m pip install -q --disable-pip-version-check -e ".[train,test,litert,bench,distill]"
# qemu-user-static runs the board code on the aarch64 instruction set (tests/arm64, `wearface board emulate`).
if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
  else
    echo "install.sh: qemu-user-static is missing (sudo apt-get install qemu-user-static); the arm64 tests will skip" >&2
  fi
fi
