# session 5, call 7 (no carry): the main job as a user runs it, `attnbench sweep` with the embedded
# default (configs/h200.yaml on an H200: the sweep, then the memory study into the run directory), in
# one call, its wall time taken by the shell; the run directory comes back as a tarball
CALL=h7; source scripts/h200_session/study_env.sh; unset ATTNBENCH_CUDA_PAGED_IMPL
source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
python3 -m attnbench doctor > "$OUT/$CALL/doctor.txt" 2>&1
stamp "sweep start"
start=$(date +%s)
timeout -s INT ${SWEEP_LIMIT_S:-585} python3 -m attnbench sweep --out results/h200-study > "$OUT/$CALL/sweep.log" 2>&1
rc=$?
echo "sweep rc=$rc wall_s=$(( $(date +%s) - start ))" | tee "$OUT/$CALL/wall.txt"
tail -30 "$OUT/$CALL/sweep.log"
tar czf "$OUT/$CALL/h200-study.tgz" -C results h200-study
pack
