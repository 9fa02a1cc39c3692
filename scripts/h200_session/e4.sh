# session 3, lease 2, call 4 (carry .fa4b .fib): install flash-attn-4 and FlashInfer; the H200 study's
# decode grid with the write-then-read flush (the README's short-context figures), then the timing check
CALL=e4; source .fa4b/install.sh; source .fib/install.sh; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
python3 -c "import importlib.metadata as m; print('fa4', m.version('flash-attn-4'))"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
step build 200 python3 -m attnbench.cuda_build build
python3 - <<'PY'
import yaml
cfg = yaml.safe_load(open("configs/h200.yaml"))
cfg.pop("fragmentation", None)
cfg["name"] = "h200-decode-grid"
cfg["description"] = "configs/h200.yaml's decode-grid workload alone (session 3: the write-then-read L2 flush)"
cfg["workloads"] = [w for w in cfg["workloads"] if w["name"] == "decode-grid"]
yaml.safe_dump(cfg, open("/tmp/h200-decode-grid.yaml", "w"), sort_keys=False)
PY
step timing "${TIMING_S:-260}" python3 scripts/gpu_timing_check.py "$OUT/$CALL/timing" --spread-runs 0
step grid "${GRID_S:-200}" python3 -m attnbench sweep /tmp/h200-decode-grid.yaml --out /tmp/grid
mkdir -p "$OUT/$CALL/grid" && cp /tmp/grid/manifest.json /tmp/grid/results.jsonl "$OUT/$CALL/grid/" 2>/dev/null
cp /tmp/h200-decode-grid.yaml "$OUT/$CALL/grid/config.yaml"
pack
