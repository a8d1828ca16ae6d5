#!/usr/bin/env bash
# The GPU check (issue 8): one command, under 8 minutes on one GPU, no settings changed.
#   scripts/gpu_check.sh [OUT_DIR]      (default gpu-check-out/)
# 1. profiles two models at several shares (MPS active-thread percentages; without an MPS
#    daemon, green contexts where available, else the whole GPU; the report says which),
# 2. checks split equals whole on CUDA,
# 3. serves a graft plan on that profile with CUDA workers for 20 s under the load generator,
# 4. writes OUT_DIR/report.md: measured vs analytic latencies, split check, served numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check-out}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
MODELS="mobilenet_v2,resnet50"
mkdir -p "$OUT"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device; this check needs a GPU" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true

echo "[1/4] profiling $MODELS on CUDA (shares 0.25, 0.5, 1.0; batches 1, 4, 8)..." >&2
timeout 240 "$PY" -m graft.cli profile --device cuda --batches 1,4,8 --shares 0.25,0.5,1.0 \
  --warmup 5 --repeats 20 -o "$OUT/gpu_profile.json" ${MODELS//,/ }

echo "[2/4] split equals whole on CUDA..." >&2
split_rc=0
timeout 120 "$PY" scripts/gpu_check.py --part split --out "$OUT" --models "$MODELS" || split_rc=$?

echo "[3/4] serving a graft plan on CUDA for 20 s..." >&2
cat > "$OUT/workload.json" <<'JSON'
{"flows": [
  {"id": "m0", "model": "mobilenet_v2", "partition": 0, "rate": 200, "budget_ms": 20},
  {"id": "m5", "model": "mobilenet_v2", "partition": 5, "rate": 200, "budget_ms": 15},
  {"id": "r0", "model": "resnet50", "partition": 0, "rate": 100, "budget_ms": 30},
  {"id": "r8", "model": "resnet50", "partition": 8, "rate": 100, "budget_ms": 20}
]}
JSON
PORT=18321
"$PY" -m graft.cli serve --workload "$OUT/workload.json" --planner graft --device cuda \
  --cost-model "profile:$OUT/gpu_profile.json" --port "$PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/v2/health/ready" > /dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "gpu_check: the server exited (see $OUT/serve.log)" >&2; break; }
  sleep 1
done
timeout 60 "$PY" -m graft.cli loadgen "http://127.0.0.1:$PORT" --workload "$OUT/workload.json" \
  --duration 20 --quiet --json "$OUT/loadgen.json" || echo "gpu_check: load generator failed" >&2
kill $SERVER 2>/dev/null || true
wait $SERVER 2>/dev/null || true

echo "[4/4] report..." >&2
"$PY" scripts/gpu_check.py --part report --out "$OUT" --models "$MODELS"
echo "gpu_check: wrote $OUT/report.md" >&2
exit $split_rc
