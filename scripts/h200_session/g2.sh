# session 4, call 2 (carry .fa4a): the first third of the CuTe DSL wheel; triton-paged's fp8 tiles with
# V widened before staging (V_CVT) in the tuner's list, and the JIT's own TTGIR/PTX of the picked kernel.
# V_CVT was a working-tree change of kernels/triton/paged_attn.py and paged_plan.py, left out after this
# call (not faster; kernels/notes/triton.md)
mkdir -p /tmp/fa4 && cp .fa4a/part.aa /tmp/fa4/
CALL=g2; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
export TRITON_CACHE_DIR=/tmp/tcache
step sweep-triton 150 python3 -m attnbench sweep configs/h200-fp8.yaml --backends triton-paged --out "$OUT/$CALL/sweep-triton"
python3 scripts/fp8_variants_table.py "$OUT/$CALL" | tee "$OUT/$CALL/variants.txt"
mkdir -p "$OUT/$CALL/ir"
for f in $(grep -l "V_CVT\|f8E4M3" /tmp/tcache/*/paged_attn_kernel.ttgir 2>/dev/null); do
  d=$(dirname "$f"); n=$(basename "$d"); cp "$f" "$OUT/$CALL/ir/$n.ttgir"; cp "$d/paged_attn_kernel.ptx" "$OUT/$CALL/ir/$n.ptx" 2>/dev/null
  echo "$n: ld.shared.b8 $(grep -c 'ld.shared.b8' "$d/paged_attn_kernel.ptx") st.shared.b8 $(grep -c 'st.shared.b8' "$d/paged_attn_kernel.ptx") ldmatrix $(grep -c ldmatrix "$d/paged_attn_kernel.ptx") inline_asm $(grep -c elementwise_inline_asm "$f")"
done | tee "$OUT/$CALL/ir.txt"
pack
