# session 3, call 2 (no carry): which L2 flush leaves decode B16 context 512 in one state (issue 16)
CALL=d2; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
step flush "${FLUSH_S:-300}" python3 scripts/gpu_flush_probe.py "$OUT/$CALL/flush" --processes 3 --reps 10 --seconds 0.2
cat "$OUT/$CALL/flush.log"
pack
