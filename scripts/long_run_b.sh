#!/usr/bin/env bash
# The long model-B run (models/runs/b_5m, from session 10), resumed every session: scripts/long_run.sh B.
# Usage: bash scripts/long_run_b.sh [DATA]   (DATA defaults to ../shared/data); runs in the foreground.
exec bash "$(dirname "$0")/long_run.sh" B "$@"
