# session 2, call 4 (no carry): the spread of launch-bound points over five fresh processes with NVML
# polled on a thread while timing (the default until now) and read only before and after (issue 16)
CALL=b2; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
SPREAD_TELEMETRY_THREAD=never step spread_nothread 140 python3 scripts/gpu_timing_check.py "$OUT/$CALL/spread-nothread" --spread-only
SPREAD_TELEMETRY_THREAD=always step spread_thread 140 python3 scripts/gpu_timing_check.py "$OUT/$CALL/spread-thread" --spread-only
pack
