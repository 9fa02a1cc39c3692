# call 1 (carry .fia): FlashInfer part 1; CUDA kernels: correctness of both paged implementations
# (tc decides the study's ATTNBENCH_CUDA_PAGED_IMPL), sanitizers, planted faults, patterns
CALL=c1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL" /tmp/fi && cp .fia/part.aa /tmp/fi/
nvidia-smi > "$OUT/$CALL/nvidia-smi.txt" 2>&1; git log --oneline -1 > "$OUT/$CALL/commit.txt" 2>/dev/null
step cuda_tc 180 python3 scripts/gpu_cuda_check.py --out "$OUT/$CALL/cuda_tc" --sanitizers memcheck,racecheck
python3 - "$OUT/$CALL/cuda_tc/cuda_check.json" <<'PY' > /tmp/paged_impl
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    rows = [x for k in ("paged_correctness", "paged_timing") for x in r.get(k, []) if "ok" in x]
    print("tc" if rows and all(x["ok"] for x in rows) and r.get("paged_timing") else "simt")
except Exception:
    print("simt")
PY
stamp "paged impl for the study: $(cat /tmp/paged_impl)"; cp /tmp/paged_impl "$OUT/$CALL/"
ATTNBENCH_CUDA_PAGED_IMPL=simt step cuda_simt 80 python3 scripts/gpu_cuda_check.py --out "$OUT/$CALL/cuda_simt" --sanitizers ''
step mutants 160 python3 scripts/gpu_mutants_check.py "$OUT/$CALL/mutants"
step cuda_patterns 140 python3 scripts/gpu_cuda_patterns_check.py "$OUT/$CALL/cuda_patterns"
pack
