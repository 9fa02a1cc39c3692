# session 2, call 3 (no carry): fp8 KV on the CUDA and Triton paged kernels (correctness, sanitizer, planted
# faults, bandwidth; issue 20) and triton-paged's split count at long context
CALL=b1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
step cuda_check 230 python3 scripts/gpu_cuda_check.py --out "$OUT/$CALL/cuda_check" --sanitizers memcheck
step mutants 110 python3 scripts/gpu_mutants_check.py "$OUT/$CALL/mutants" --skip-triton
step splits 90 python3 scripts/gpu_triton_splits_probe.py "$OUT/$CALL/splits"
step fp8_sweep 150 python3 -m attnbench sweep configs/h200-fp8.yaml --out /tmp/h200-fp8
cp -r /tmp/h200-fp8 "$OUT/$CALL/" 2>/dev/null
pack
