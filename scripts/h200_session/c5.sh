# call 5 (no carry): the H200 study resumed to its end; the run folder back as a tarball
CALL=c5; source scripts/h200_session/study_env.sh; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
STUDY_CONFIG=configs/h200.yaml SWEEP_LIMIT_S=${STUDY_S:-540} bash scripts/gpu_study.sh "$OUT/$CALL/study" results/h200-study
tar czf "$OUT/h200-study.tgz" -C results h200-study; stamp "run folder packed"
pack
