#!/usr/bin/env bash
# One command sets up a fresh clone: Python deps (CPU torch pinned), the JS front end, and the browser
# used by the end-to-end tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --upgrade pip >/dev/null
# -c pins torch to the CPU wheel on these machines; a GPU user runs `pip install qscope-widgets` instead.
python3 -m pip install -c constraints-cpu.txt -e ".[dev]"
