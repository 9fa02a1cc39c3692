# session 4, call 5 (carry .fib; flash-attn-4 installed two calls before with .fa4b, its PYTHONPATH exported
# by the command): install FlashInfer, build, and the H200 study's
# first part (configs/h200.yaml, resumable in results/h200-study)
CALL=g5; source .fa4b/env.sh; source .fib/install.sh; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
python3 -c "import importlib.metadata as m; print('fa4', m.version('flash-attn-4'), 'flashinfer', m.version('flashinfer-python'))"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
STUDY_CONFIG=configs/h200.yaml SWEEP_LIMIT_S=${STUDY_S:-500} bash scripts/gpu_study.sh "$OUT/$CALL/study" results/h200-study
pack
