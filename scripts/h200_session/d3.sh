# session 3, call 3 (no carry): the five-process spread through run_point with the write-then-read flush
CALL=d3; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
step spread 300 python3 scripts/gpu_timing_check.py "$OUT/$CALL/timing" --spread-only --spread-runs 5
cp "$OUT/$CALL/timing/spread.json" "$OUT/$CALL/spread.json" 2>/dev/null
pack
