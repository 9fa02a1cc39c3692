# session 2, call 4 (no carry): the DRAM-traffic profile (ncu) of the H200 study's main points, joined with
# the committed study's rows; what `attnbench sweep --profile` runs after a sweep (issue 25)
CALL=b2; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
step build 200 python3 -m attnbench.cuda_build build
step profile 520 python3 -m attnbench profile configs/h200.yaml --workload decode-main --workload prefill-main \
  --backends naive,sdpa-flash,sdpa-cudnn,triton-flash,cuda-flash,triton-paged,cuda-paged --tool ncu \
  --sweep results/baselines/h200 --timeout 120 --out /tmp/h200-profile
find /tmp/h200-profile -name "*.ncu-rep" -delete; tar czf "$OUT/$CALL/h200-profile.tgz" -C /tmp h200-profile
pack
