# call 2 (carry .fib): install FlashInfer; its check, which JIT-builds (and caches in /tmp/fiws)
# the bf16 D128 modules the study uses
CALL=c2; source .fib/install.sh; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
step flashinfer ${FI_LIMIT_S:-500} python3 scripts/gpu_flashinfer_check.py "$OUT/$CALL/flashinfer"
du -sh /tmp/fiws 2>/dev/null; find /tmp/fiws -name "*.so" | head -20
pack
