#!/usr/bin/env bash
# One-shot GPU suite (see benchmarks/gpu_suite.py): writes $OUT/gpu_suite.json, or ./gpu_suite.json.
#   bash benchmarks/gpu_suite.sh            # on a GPU machine, a few minutes
#   bash benchmarks/gpu_suite.sh --quick    # small n on a CPU, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
exec python benchmarks/gpu_suite.py --out "${OUT:-.}/gpu_suite.json" "$@"
