# session 5, call 1 (no carry; run with the working-tree variants of variants-tried.patch in
# results/baselines/triton-probes-h200, since removed): what the Triton tuners' parallel build saves; every triton-flash tile
# (and the one-loop causal variant) on the study's prefill shapes; triton-paged decode tiles for bf16,
# fp8 and fp8 with V dim-major, and Nsight Compute of the two fp8 kernels (B64 context 4096)
CALL=h1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid,clocks.sm,temperature.gpu --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
for mode in 0 1; do
  TRITON_CACHE_DIR=/tmp/tc-$mode ATTNBENCH_TRITON_TUNING_CACHE=off ATTNBENCH_TRITON_PARALLEL_COMPILE=$mode \
    step tune-$mode 120 python3 scripts/gpu_tune_time_probe.py "$OUT/$CALL/tune-$mode.json"
done
step tiles 200 python3 scripts/gpu_flash_tiles_probe.py "$OUT/$CALL/tiles" --rounds 3
step fp8 120 python3 scripts/gpu_paged_fp8_probe.py "$OUT/$CALL/fp8.jsonl" --rounds 3
export ATTNBENCH_TRITON_TUNING_CACHE=/tmp/tune-ncu.json
for kv in fp8 fp8-vdim; do
  step pick-$kv 60 python3 scripts/gpu_paged_ncu_probe.py $kv
  step ncu-$kv 120 ncu --profile-from-start off --set full --import-source yes -c 1 -f -o "$OUT/$CALL/ncu-$kv" python3 scripts/gpu_paged_ncu_probe.py $kv
  ncu -i "$OUT/$CALL/ncu-$kv.ncu-rep" --page details --csv > "$OUT/$CALL/ncu-$kv-details.csv" 2> "$OUT/$CALL/ncu-$kv-details.err"
  ncu -i "$OUT/$CALL/ncu-$kv.ncu-rep" --page source --csv --print-source sass > "$OUT/$CALL/ncu-$kv-source.csv" 2> "$OUT/$CALL/ncu-$kv-source.err"
  ls -la "$OUT/$CALL"/ncu-$kv*; head -c 300 "$OUT/$CALL/ncu-$kv-source.err"
done
pack
