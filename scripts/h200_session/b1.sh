# session 2, call 3 (no carry): fp8 KV on the CUDA and Triton paged kernels (correctness, planted faults,
# bandwidth; issue 20), triton-paged's split count at long context, and the spread of launch-bound
# points with and without NVML polling while timing (issue 16)
CALL=b1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
git log --oneline -1 > "$OUT/$CALL/commit.txt" 2>/dev/null
step build 200 python3 -m attnbench.cuda_build build
step fp8_check 150 python3 scripts/gpu_cuda_check.py --out "$OUT/$CALL/cuda_fp8" --sanitizers memcheck ${FP8_CHECK_ARGS:-}
step splits 120 python3 scripts/gpu_triton_splits_probe.py "$OUT/$CALL/splits"
step fp8_sweep 200 python3 -m attnbench sweep configs/h200-fp8.yaml --out /tmp/h200-fp8
cp -r /tmp/h200-fp8 "$OUT/$CALL/" 2>/dev/null
SPREAD_TELEMETRY_THREAD=never step spread_nothread 110 python3 scripts/gpu_timing_check.py "$OUT/$CALL/spread-nothread" --spread-only
step spread_default 110 python3 scripts/gpu_timing_check.py "$OUT/$CALL/spread-default" --spread-only
pack
