#!/usr/bin/env bash
# The one command: bash bench/run.sh [--quick] [options of bench/run.py]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" bench/run.py "$@"
