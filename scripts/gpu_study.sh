#!/usr/bin/env bash
# The H100 reference study (run on the GPU machine from the repository root):
#   bash scripts/gpu_study.sh OUT_DIR [RUN_DIR]
# doctor + backends listing + the full configs/h100.yaml sweep with every backend available
# (flash-attn-4 too when installed). The sweep runs into RUN_DIR (default results/h100-study) and
# resumes there if it already holds part of the run; SWEEP_LIMIT_S bounds this call's share.
set -uo pipefail
out=${1:?usage: gpu_study.sh OUT_DIR [RUN_DIR]}
run=${2:-results/h100-study}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
python3 -m attnbench doctor > "$out/doctor.txt" 2>&1
python3 -m attnbench backends > "$out/backends.txt" 2>&1
resume=()
[ -f "$run/manifest.json" ] && resume=(--resume)
# SIGINT, not SIGTERM: the sweep treats it as Ctrl-C and leaves a resumable run.
# STUDY_CONFIG picks the config (default configs/h100.yaml; configs/h200.yaml for the H200 study).
timeout -s INT "${SWEEP_LIMIT_S:-540}" python3 -m attnbench sweep "${STUDY_CONFIG:-configs/h100.yaml}" --out "$run" "${resume[@]}" \
  > "$out/sweep.log" 2>&1
echo "sweep exit $?"
tail -25 "$out/sweep.log"
mkdir -p "$out/run" && cp "$run/manifest.json" "$run/results.jsonl" "$out/run/"
