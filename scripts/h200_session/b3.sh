# session 2, call 5 (no carry): the DRAM-traffic profile (ncu) of the H200 study's main points, joined with
# the committed study's rows: what `attnbench sweep --profile` runs after a sweep (issue 25)
CALL=b3; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
step build 120 python3 -m attnbench.cuda_build build
step profile ${PROFILE_S:-420} python3 -m attnbench profile configs/h200.yaml --workload decode-main --workload prefill-main \
  --backends naive,sdpa-flash,sdpa-cudnn,triton-flash,cuda-flash,triton-paged,cuda-paged --tool ncu \
  --sweep results/baselines/h200 --timeout 100 --out /tmp/h200-profile
find /tmp/h200-profile -name "*.ncu-rep" -delete; tar czf "$OUT/$CALL/h200-profile.tgz" -C /tmp h200-profile
pack
