# session 4, call 6 (no carry; the machine of g5, still warm): the study resumed to its end, with the
# memory study written into the run directory
CALL=g6; source .fa4b/env.sh; source .fib/env.sh 2>/dev/null; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
STUDY_CONFIG=configs/h200.yaml SWEEP_LIMIT_S=${STUDY_S:-540} bash scripts/gpu_study.sh "$OUT/$CALL/study" results/h200-study
cp results/h200-study/fragmentation.json results/h200-study/fragmentation.md "$OUT/$CALL/study/" 2>/dev/null
ls results/h200-study
pack
