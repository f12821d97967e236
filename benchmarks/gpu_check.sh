#!/usr/bin/env bash
# The GPU check (issue 16): one command, a few minutes on one GPU; writes gpu_check.json and
# gpu_check.md under benchmarks/results/ (or --out-dir). Without CUDA it takes the CPU path and marks
# the CUDA rows "skipped: no CUDA". --tiny (or GPU_CHECK_TINY=1): a budget of seconds.
#   bash benchmarks/gpu_check.sh [--out-dir DIR] [--tiny] [--steps N] ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python"; fi
fi
cd "$root"
exec "$python" "$here/gpu_check.py" "$@"
