#!/usr/bin/env bash
# The long model-A run (models/runs/a_5m), resumed every session: scripts/long_run.sh A.
# Usage: bash scripts/long_run_a.sh [DATA]   (DATA defaults to ../shared/data); runs in the foreground.
exec bash "$(dirname "$0")/long_run.sh" A "$@"
