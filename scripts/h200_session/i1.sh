# session 6, call 1 (no carry): triton-paged fp8 decode with V read as int32 words (V_WORDS) against
# V read as bytes, every tile, B64 ctx4096 and B4 ctx32768 (scripts/gpu_paged_fp8_probe.py); then the
# FP8 config's triton-paged points through the harness (tuner, per-sequence check, held device time)
# with the words path off and on, each with its own empty tuning memo
CALL=i1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid,clocks.sm,temperature.gpu --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step fp8 240 python3 scripts/gpu_paged_fp8_probe.py "$OUT/$CALL/fp8.jsonl" --rounds 3
for w in 0 1; do
  ATTNBENCH_TRITON_FP8_V_WORDS=$w ATTNBENCH_TRITON_TUNING_CACHE=/tmp/tune-w$w.json \
    step sweep-w$w 150 python3 -m attnbench sweep configs/h200-fp8.yaml --backends naive,triton-paged --out "$OUT/$CALL/fp8-w$w"
  cp /tmp/tune-w$w.json "$OUT/$CALL/" 2>/dev/null
done
pack
