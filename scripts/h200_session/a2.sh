# session 2, call 2 (no carry): the gate's evidence runs (issue 19): a 5-run baseline and 9 fresh runs of
# configs/ci-gate.yaml on the card at hand, packed for scripts/gate_evidence_analysis.py (on a CPU)
CALL=a2; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1
step gate 560 python3 scripts/gate_evidence_runs.py /tmp/gate-ev --fresh 9 --budget-s 480
tar czf "$OUT/$CALL/gate-ev.tgz" -C /tmp gate-ev; stamp "gate runs packed"
pack
