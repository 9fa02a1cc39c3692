# session 2, call 1 (no carry): the cross-process spread probe (issue 16), the spread check, an ncu smoke test
CALL=a1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid,power.limit,clocks.max.sm --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
step probe 200 python3 scripts/gpu_spread_probe.py "$OUT/$CALL/probe" --rotate 24 --processes 5 --seconds 1.2
step spread 120 python3 scripts/gpu_timing_check.py "$OUT/$CALL/timing" --spread-only --spread-runs 5
step ncu 60 python3 -m attnbench profile --backend triton-paged --phase decode --seqlen 1,1,1,1 \
  --kv-len 4096,4096,4096,4096 --q-heads 32 --kv-heads 8 --block-size 16 --tool ncu --timeout 50 --out /tmp/ncu-smoke
cp -r /tmp/ncu-smoke "$OUT/$CALL/" 2>/dev/null; find "$OUT/$CALL/ncu-smoke" -name "*.ncu-rep" -delete 2>/dev/null
pack
