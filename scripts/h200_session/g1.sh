# session 4, call 1 (no carry beyond the tree): cuda-paged's fp8 path, four builds side by side (HEAD's
# kernel, the new one, the new one with a stale-max slack of 8, the new one at 3 blocks/SM with 4 stages),
# triton-paged's fp8 tile candidates against HEAD's, then the new kernel's checks and planted faults.
# Variant sources: .fp8v/base (paged_attention.cu, common.cuh, paged_plan.py, paged_attn.py as of commit
# 81a3702, `git show 81a3702:PATH`; an untracked folder, not kept), sed below for the others.
CALL=g1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid,clocks.max.sm --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
V=/tmp/v
for v in base new slack8 occ3; do mkdir -p $V/$v && cp -r attnbench kernels configs $V/$v/; done
cp .fp8v/base/paged_attention.cu .fp8v/base/common.cuh $V/base/kernels/cuda/
cp .fp8v/base/paged_plan.py .fp8v/base/paged_attn.py $V/base/kernels/triton/
sed -i 's/constexpr float kStaleMaxSlack = 0.f;/constexpr float kStaleMaxSlack = 8.f;/' $V/slack8/kernels/cuda/paged_attention.cu
sed -i 's/static constexpr int kMinBlocks = E == 1 \&\& D <= 128 ? 4 : 1;/static constexpr int kMinBlocks = 1;/; s/static constexpr int kStages = D == 64 ? 4 : D == 128 ? 3 : 2;/static constexpr int kStages = D == 64 ? 4 : D == 128 ? (E == 1 ? 4 : 3) : 2;/' $V/occ3/kernels/cuda/paged_attention.cu
grep -c "kStaleMaxSlack = 8.f" $V/slack8/kernels/cuda/paged_attention.cu; grep -c "E == 1 ? 4 : 3" $V/occ3/kernels/cuda/paged_attention.cu
stamp "build 4 variants"
for v in base new slack8 occ3; do
  (cd $V/$v && ATTNBENCH_CUDA_CACHE=/tmp/cc/$v PYTHONPATH=. python3 -m attnbench.cuda_build build --arch sm_90a > "$OUT/$CALL/build-$v.log" 2>&1) &
done
wait; stamp "built"; tail -n 2 "$OUT/$CALL"/build-*.log
for v in base new slack8 occ3; do
  (cd $V/$v && export ATTNBENCH_CUDA_CACHE=/tmp/cc/$v && step sweep-cuda-$v 120 python3 -m attnbench sweep configs/h200-fp8.yaml --backends cuda-paged --out "$OUT/$CALL/sweep-cuda-$v")
done
for v in base new; do
  (cd $V/$v && export ATTNBENCH_CUDA_CACHE=/tmp/cc/$v && step sweep-triton-$v 150 python3 -m attnbench sweep configs/h200-fp8.yaml --backends triton-paged --out "$OUT/$CALL/sweep-triton-$v")
done
python3 scripts/fp8_variants_table.py "$OUT/$CALL" | tee "$OUT/$CALL/variants.txt"
export ATTNBENCH_CUDA_CACHE=/tmp/cc/new
step cuda_check 150 python3 scripts/gpu_cuda_check.py --out "$OUT/$CALL/cuda_check" --sanitizers memcheck
step mutants 150 python3 scripts/gpu_mutants_check.py "$OUT/$CALL/mutants" --skip-triton
pack
