#!/usr/bin/env bash
# The `small` study on one GPU: Baseline vs GradStack vs MIDAS, end to end, in about 11 minutes
# on an H100 (no internet needed; 11 min 9 s measured with torch 2.11).
#
#   bash /path/to/rprim/scripts/gpu_study.sh       # from any folder; OUT_DIR=/tmp/rprim-gpu-study
#   STEPS=600 bash scripts/gpu_study.sh            # a shorter run (fewer tokens per model)
#   EXTRA="--mix varassign:0.3,copying:0.05" bash scripts/gpu_study.sh
#
# Runs `rprim study --preset small` (12 layers, d 768, context 1024, 32 x 1024 tokens per step,
# 1200 steps = 39.3M tokens per model, 45% of them solved primitives from the train split, depth
# 0 weighted up) on the Python standard library source; scores 3 snapshots and the final model
# of each method on the 5-shot suite; runs the fine-tuning protocol (3 seeds, 300 steps); runs
# both layer analyses; writes the report. Prints the time budget before it starts, what each
# part took as it goes (the study's own part lines), then the report's main tables. Uses
# whatever rprim Python imports; needs torch with CUDA, transformers, tokenizers, safetensors,
# tqdm, click, jinja2, numpy, pandas and matplotlib. CACHE_DIR (default /tmp/rprim-gpu-cache,
# the one scripts/gpu_check.sh uses) keeps the tokenizer and token files between the two.
# The result folder keeps only small files unless KEEP=1: weights, checkpoints and snapshots
# are deleted at the end, per-example samples lose their prompts (a few MB are left).
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${OUT_DIR:-/tmp/rprim-gpu-study}
CACHE=${CACHE_DIR:-/tmp/rprim-gpu-cache}
STEPS=${STEPS:-}
KEEP=${KEEP:-0}

$PY - <<'PYEOF' || exit 2
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "rprim", "click", "jinja2", "numpy", "tokenizers", "safetensors",
                       "tqdm", "pandas", "matplotlib") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_study: missing modules {', '.join(missing)}; install them into {sys.executable}")
import torch, transformers
if not torch.cuda.is_available():
    sys.exit("gpu_study: no CUDA device visible; run it on a GPU machine")
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}")
PYEOF

cat <<'EOF'
time budget on one H100 (80 GB), about 11 min (measured: 11 min 9 s; torch.compile on, the CUDA default):
  data (BPE on the stdlib unless cached, token file, mix)   ~15 s
  train baseline, gradstack, midas     ~5 min  (39.3M tokens each at ~38% MFU, stacking at 0.85x
                                                the baseline's FLOPs; one compile per run)
  evaluate 3 x (3 snapshots + final)   ~1 min  (5-shot suite: 150 per task per snapshot, 400 final)
  fine-tune 3 models x 3 seeds         ~4.5 min (300 steps; 3 evaluations of 2 x 400 examples each)
  analyses + report                    ~1 min
EOF

ARGS=(--preset small --out "$OUT" --corpus stdlib-python --set "cache_dir=$CACHE")
if [ -n "$STEPS" ]; then ARGS+=(--steps "$STEPS"); fi
# shellcheck disable=SC2206
if [ -n "${EXTRA:-}" ]; then ARGS+=($EXTRA); fi
START=$(date +%s)
# progress bars (tqdm, "\r"-updated) are dropped; the study's own lines and the trainer's logs stay
$PY -m rprim study "${ARGS[@]}" 2>&1 | tr '\r' '\n' | grep --line-buffered -v -E '[0-9]+%\|'
RC=${PIPESTATUS[0]}
END=$(date +%s)
if [ "$RC" -ne 0 ]; then echo "== study failed (exit $RC) after $((END - START)) s"; exit "$RC"; fi
echo "== study wall time: $((END - START)) s"
sed -n '/^## Accuracy by task group/,/^!\[accuracy/p' "$OUT/report/report.md"
sed -n '/^## Accuracy against validation loss/,/^!\[loss/p' "$OUT/report/report.md" | head -30
grep -h -A12 "Wall time per part" "$OUT/report/report.md" || true

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
