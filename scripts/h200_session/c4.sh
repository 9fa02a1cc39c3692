# call 4 (carry .fa4b): install FA4; the H200 study (configs/h200.yaml), first part
CALL=c4; source .fa4b/install.sh; source scripts/h200_session/study_env.sh; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
python3 -c "import importlib.metadata as m; print('fa4', m.version('flash-attn-4'))"; python3 -c "import flashinfer; print('fi', flashinfer.__version__)"
echo "paged impl: $ATTNBENCH_CUDA_PAGED_IMPL"
STUDY_CONFIG=configs/h200.yaml SWEEP_LIMIT_S=${STUDY_S:-560} bash scripts/gpu_study.sh "$OUT/$CALL/study" results/h200-study
tar czf "$OUT/h200-study.tgz" -C results h200-study; stamp "run folder packed"
pack
