#!/usr/bin/env bash
# The `small` study on one GPU: Baseline vs GradStack vs MIDAS, end to end, in under 15 minutes
# on an H100 (no internet needed).
#
#   bash scripts/gpu_study.sh                 # OUT_DIR=/tmp/rprim-gpu-study
#   STEPS=1000 bash scripts/gpu_study.sh      # a shorter run (fewer tokens per model)
#   EXTRA="--mix varassign-basic-d0:0.1,varassign-math-d0:0.1,varassign-code-d0:0.1" bash scripts/gpu_study.sh
#
# Trains `rprim study --preset small` (12 layers, d 768, context 1024, 32 x 1024 tokens per step,
# 1600 steps = 52.4M tokens per model, mix varassign/copying/psm/arithmetic) on the Python
# standard library source; scores 3 snapshots and the final model of each method on the 5-shot
# suite; runs the fine-tuning protocol (3 seeds, 300 steps); runs both layer analyses; writes
# the report. Prints the time budget of each stage before it starts and what each stage took
# (the study's own part headers), then the report's main table. The result folder keeps only
# small files: the model weights, checkpoints and snapshots are deleted at the end unless KEEP=1
# (the report, results/*.json and the per-example samples stay: a few MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-/tmp/rprim-gpu-study}
STEPS=${STEPS:-}
KEEP=${KEEP:-0}

if ! $PY -c "import rprim.model_zoo" 2>/dev/null; then
  $PY -m pip install --no-deps --no-build-isolation -e . >/dev/null
fi
# matplotlib draws the figures; a machine without internet can install it from a wheel folder
# made elsewhere: pip download --only-binary=:all: --python-version 3.12 \
#   --platform manylinux2014_x86_64 -d wheels matplotlib   (then WHEELS=wheels bash scripts/gpu_study.sh)
if ! $PY -c "import matplotlib" 2>/dev/null && [ -n "${WHEELS:-}" ]; then
  $PY -m pip install --no-index --find-links "$WHEELS" matplotlib >/dev/null
fi
$PY - <<'PYEOF'
import importlib.util, torch, transformers
assert torch.cuda.is_available(), "no CUDA device visible"
missing = [m for m in ("click", "jinja2", "numpy", "tokenizers", "safetensors", "tqdm", "pandas", "matplotlib")
           if importlib.util.find_spec(m) is None]
assert not missing, f"missing modules (no internet here): {missing}"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}")
PYEOF

cat <<'EOF'
time budget on one H100 (80 GB), total < 15 min (torch.compile on, the trainer's CUDA default):
  data (BPE on the stdlib, token file, mix)   ~0.5 min
  train baseline, gradstack, midas            ~7 min  (52.4M tokens each at ~400k tokens/s; stacking
                                                      ~0.85x the baseline plus one recompile per stage)
  evaluate 3 x (3 snapshots + final model)    ~2 min  (5-shot suite: 150 per task per snapshot, 400 final)
  fine-tune 3 models x 3 seeds x 300 steps    ~3 min  (3 evaluations of 2 x 400 examples per seed)
  analyses + report                           ~1 min
EOF

ARGS=(--preset small --out "$OUT" --corpus stdlib-python)
if [ -n "$STEPS" ]; then ARGS+=(--steps "$STEPS"); fi
# shellcheck disable=SC2206
if [ -n "${EXTRA:-}" ]; then ARGS+=($EXTRA); fi
START=$(date +%s)
# progress bars (tqdm, "\r"-updated) are dropped; the study's own lines and the trainer's logs stay
set +e
$PY -m rprim study "${ARGS[@]}" 2>&1 | tr '\r' '\n' | grep --line-buffered -v -E '[0-9]+%\|'
RC=${PIPESTATUS[0]}
set -e
if [ "$RC" -ne 0 ]; then echo "== study failed (exit $RC)"; exit "$RC"; fi
END=$(date +%s)
echo "== study wall time: $((END - START)) s"
sed -n '/^## Accuracy by task group/,/^!\[accuracy/p' "$OUT/report/report.md"
sed -n '/^## Accuracy against validation loss/,/^!\[loss/p' "$OUT/report/report.md" | head -20
grep -h "Wall time per part" "$OUT/report/report.md" || true

if [ "$KEEP" != "1" ]; then
  for m in baseline gradstack midas; do
    rm -rf "$OUT/runs/$m/checkpoints" "$OUT/runs/$m/snapshots" "$OUT/runs/$m"/*.safetensors
  done
  # per-example samples without their 5-shot prompts (id, target, prediction, correct stay,
  # so `rprim report` can still pair the models): tens of MB -> a few
  $PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
for f in Path(sys.argv[1], "results").rglob("samples/*.jsonl"):
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    f.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "prompt"}) + "\n" for r in rows))
PYEOF
fi
du -sh "$OUT"
echo "report: $OUT/report/report.html"
