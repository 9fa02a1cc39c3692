# session 2, call 6 (no carry): fp8 KV with fp16 MMAs and sm_90's one-instruction e4m3 -> fp16 convert
# (cuda-paged tc and triton-paged): correctness, planted faults, the GPU tests, bandwidth (issue 20)
CALL=c6; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 150 python3 -m attnbench.cuda_build build
step cuda_check 120 python3 scripts/gpu_cuda_check.py --out "$OUT/$CALL/cuda_check" --sanitizers memcheck
step fp8_sweep 90 python3 -m attnbench sweep configs/h200-fp8.yaml --out /tmp/h200-fp8
cp -r /tmp/h200-fp8 "$OUT/$CALL/" 2>/dev/null
step mutants 110 python3 scripts/gpu_mutants_check.py "$OUT/$CALL/mutants" --skip-triton
step gpu_tests 90 python3 -m pytest -q -x -k "fp8" tests/test_cuda_kernels.py tests/test_fp8_kv.py tests/test_triton_kernels.py
pack
