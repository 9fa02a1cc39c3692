# session 2, call 7 (no carry): the five-process spread of launch-bound points with short points behind one
# stream hold of >= 500 us (TimingPolicy.short_hold_us; issue 16)
CALL=c7; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1
step spread 130 python3 scripts/gpu_timing_check.py "$OUT/$CALL/spread" --spread-only
pack
