# session 3, call 1 (no carry): bare sampler against run_point in the same processes (issue 16)
CALL=d1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid,power.limit,clocks.max.sm --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
step paired "${PAIRED_S:-330}" python3 scripts/gpu_spread_probe.py "$OUT/$CALL/paired" --paired --processes "${PAIRED_N:-8}" --seconds 1.2
pack
