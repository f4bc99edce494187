#!/usr/bin/env bash
# The prepared GPU check (see bench/gpu_check.py): nnU-Net v2's trainer vs medloop's on the
# same 3d_fullres plan, then promptable and pre-training smoke campaigns where they exist.
# Run only on a lent GPU machine, from the repository root; CI never depends on it.
# Whole run capped at 7 min 55 s; the JSON goes to bench/results/gpu_check.json (and to
# $OUT/gpu_check.json when $OUT is set, e.g. on the device runner).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_OFFLINE_MODE=true ANONYMIZED_TELEMETRY=False HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
timeout 475 "$PY" bench/gpu_check.py --out bench/results/gpu_check.json "$@"
rc=$?
if [ -n "${OUT:-}" ] && [ -f bench/results/gpu_check.json ]; then cp bench/results/gpu_check.json "$OUT/gpu_check.json"; fi
exit $rc
