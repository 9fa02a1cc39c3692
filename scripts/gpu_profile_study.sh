#!/usr/bin/env bash
# The profiling study of issue 9 (run on the GPU machine from the repository root):
#   bash scripts/gpu_profile_study.sh OUT_DIR
# ncu over the decode and prefill cases of configs/h100.yaml (decode-main: B64 Hq32 Hkv8 D128
# context 4096, block 16, shuffled and contiguous pools; prefill-main: B4 N4096 H32 D128, causal
# and not) for the reference and own backends, joined with the committed H100 sweep's timings.
# Runs land in results/prof-decode and results/prof-prefill; OUT_DIR gets a tarball of each and
# the logs. PROFILE_TIMEOUT bounds each point under ncu (default 150 s), PHASE_LIMIT_S each phase.
set -uo pipefail
out=${1:?usage: gpu_profile_study.sh OUT_DIR}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
python3 -m attnbench.cuda_build build > "$out/build.log" 2>&1 || echo "CUDA build failed: see build.log"
sweep=results/baselines/h100
for phase in decode prefill; do
  backends=naive,sdpa-flash,sdpa-cudnn,triton-flash,cuda-flash
  [ "$phase" = decode ] && backends=naive,sdpa-flash,sdpa-cudnn,triton-flash,triton-paged,cuda-paged
  rm -rf "results/prof-$phase"
  # PHASE_LIMIT_S bounds each phase (SIGINT: the points done so far stay in the run)
  timeout -s INT "${PHASE_LIMIT_S:-280}" python3 -m attnbench profile configs/h100.yaml --workload "$phase-main" --backends "$backends" \
    --tool ncu --sweep "$sweep" --timeout "${PROFILE_TIMEOUT:-150}" --out "results/prof-$phase" \
    > "$out/profile-$phase.log" 2>&1
  echo "profile $phase exit $?"
  tail -30 "$out/profile-$phase.log"
  # the .ncu-rep reports are large (tens of MB each): keep the CSVs, rows and logs
  tar czf "$out/prof-$phase.tgz" --exclude="*.ncu-rep" -C results "prof-$phase"
done
