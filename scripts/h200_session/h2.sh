# session 5, call 2 (carry .fa4a): flash-attn-4's first wheel part, then the CUDA kernels' build (the
# main job's prerequisite, timed here apart from the sweep)
CALL=h2; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
mkdir -p /tmp/fa4 && cp .fa4a/part.aa /tmp/fa4/
step build 300 python3 -m attnbench.cuda_build build
pack
