# session 5, call 8 (no carry): the DRAM-traffic profile (ncu) of the study's decode-main and
# prefill-main points into the run directory (what `attnbench sweep --profile` runs after a sweep)
CALL=h8; source scripts/h200_session/study_env.sh; unset ATTNBENCH_CUDA_PAGED_IMPL
source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
step profile ${PROFILE_S:-400} python3 -m attnbench profile configs/h200.yaml --workload decode-main --workload prefill-main \
  --backends naive,sdpa-flash,sdpa-cudnn,triton-flash,cuda-flash,triton-paged,cuda-paged --tool ncu \
  --sweep results/h200-study --timeout 100 --out /tmp/h200-profile
find /tmp/h200-profile -name "*.ncu-rep" -delete; tar czf "$OUT/$CALL/h200-profile.tgz" -C /tmp h200-profile
pack
