# session 4, call 7 (no carry; a fresh lease): triton-paged's fp8 decode with register-capped tiles
# (168 / 128 registers: 3 / 4 programs of 4 warps per SM instead of 2) in the tuner's list. The cap was
# a working-tree change (LaunchConfig.max_regs -> maxnreg, three capped fp8 tiles), left out after this
# call: none was picked (kernels/notes/triton.md)
CALL=g7; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step sweep-triton 110 python3 -m attnbench sweep configs/h200-fp8.yaml --backends triton-paged --out "$OUT/$CALL/sweep-triton"
python3 scripts/fp8_variants_table.py "$OUT/$CALL" | tee "$OUT/$CALL/variants.txt"
pack
