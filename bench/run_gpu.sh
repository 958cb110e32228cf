#!/usr/bin/env bash
# bench/bench_sam_gpu.py on a GPU machine, one part per process so that a part that fails or
# runs out of time leaves the others' figures: bench/run_gpu.sh OUT_DIR [SECONDS_PER_PART]
# Writes OUT_DIR/gpu_<part>.json, OUT_DIR/gpu.json (the parts merged) and OUT_DIR/log.txt.
# Where the folder .whl holds wheels (packages the machine lacks), they are installed first.
set -u
out=${1:?usage: bench/run_gpu.sh OUT_DIR [SECONDS_PER_PART]}
limit=${2:-150}
py=${PYTHON:-python3}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used,memory.total \
    --format=csv
  "$py" -c "import torch, torchvision, transformers; print(torch.__version__, torchvision.__version__, transformers.__version__)"
} >>"$out/log.txt" 2>&1
for part in sam wsod detector dino mask2former; do
  start=$(date +%s)
  timeout "$limit" "$py" bench/bench_sam_gpu.py --only "$part" --out "$out/gpu_$part.json" \
    >/dev/null 2>>"$out/log.txt"
  echo "$part: exit $? in $(($(date +%s) - start)) s" | tee -a "$out/log.txt"
done
"$py" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
merged = {}
for f in sorted(out.glob("gpu_*.json")):
    merged |= json.loads(f.read_text())
(out / "gpu.json").write_text(json.dumps(merged, indent=2) + "\n")
PY
