# call 3 (carry .fa4a): FA4 part 1; the five-process spread of launch-bound points (issue 16)
CALL=c3; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL" /tmp/fa4 && cp .fa4a/part.aa /tmp/fa4/
step spread 170 python3 scripts/gpu_timing_check.py "$OUT/$CALL/timing" --spread-only
pack
