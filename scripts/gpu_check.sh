#!/usr/bin/env bash
# One-GPU check of rprim: trainer throughput and MFU (eager and default), MIDAS's time ratio
# against its FLOP ratio, the evaluator against its forward-pass floor, and the test suite.
#
#   bash /path/to/rprim/scripts/gpu_check.sh      # from any folder; about 5 minutes on an H100
#
# Uses whatever rprim Python imports (an editable or a plain `pip install --no-deps .`); needs
# torch with CUDA, transformers, tokenizers, safetensors, tqdm, click, jinja2, numpy, pandas,
# matplotlib (no internet). Results go to $OUT_DIR (default /tmp/rprim-gpu-check): the summary
# lines are also written to $OUT_DIR/summary.txt. Settings: STEPS (default 300), PYTHON,
# CACHE_DIR (default /tmp/rprim-gpu-cache: tokenizer and token files, shared with gpu_study.sh),
# TESTS (what pytest runs; default the whole suite).
# DRY=1 runs the same logic on the CPU with the tiny preset, to check the script itself.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
OUT=${OUT_DIR:-/tmp/rprim-gpu-check}
CACHE=${CACHE_DIR:-/tmp/rprim-gpu-cache}
STEPS=${STEPS:-300}
DRY=${DRY:-0}
TESTS=${TESTS:-$REPO/tests}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

if ! $PY -c "import rprim.model_zoo, rprim.evaluators" 2>/dev/null; then
  echo "rprim is not importable by $PY; install it first: pip install --no-deps $REPO" >&2
  exit 2
fi
if [ "$DRY" = "1" ]; then
  PRESET=tiny; DEV="--set device=cpu --set max_corpus_bytes=600000 --set seq_len=512"
  EAGER_STEPS=$((STEPS / 2))
  EVAL_N=30; EVAL_DEV=cpu
else
  PRESET=small; DEV=""; EAGER_STEPS=$((STEPS / 2)); EVAL_N=1000; EVAL_DEV=cuda
  if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to $PY; run it on a GPU machine (DRY=1 checks the script on the CPU)" >&2
    exit 2
  fi
fi
$PY - <<'EOF' | tee -a "$SUMMARY"
import platform, torch, transformers, rprim
dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(f"rprim {rprim.__version__} from {rprim.__file__}; torch {torch.__version__}, "
      f"transformers {transformers.__version__}, Python {platform.python_version()}, {dev}")
EOF

# ---- 1. trainer: default (compile on CUDA), eager, and MIDAS PROP-2 on the same tokens -------
# The mix (solved primitives from the train split) teaches the models the suite's format, so the
# evaluator below meets a model that answers and ends its line (fast path) as well as wrong
# answers (decoding); it changes the data, not the speed of a step.
MIX=varassign:0.3,copying:0.05,psm:0.05,arithmetic:0.05
COMMON=(--preset "$PRESET" --corpus stdlib-python --cache-dir "$CACHE" --overwrite --quiet --mix "$MIX"
        --set eval_every=100000 --set ckpt_every=100000 --set log_every=10)
# shellcheck disable=SC2206
[ -n "$DEV" ] && COMMON+=($DEV)
stamp "train $PRESET baseline, default settings, $STEPS steps"
$PY -m rprim train "${COMMON[@]}" --method baseline --steps "$STEPS" --out "$OUT/baseline" || exit 1
stamp "train $PRESET baseline, eager (compile off), $EAGER_STEPS steps"
$PY -m rprim train "${COMMON[@]}" --method baseline --steps "$EAGER_STEPS" --set compile=false \
    --out "$OUT/eager" || exit 1
stamp "train $PRESET midas prop-2, default settings, $STEPS steps"
$PY -m rprim train "${COMMON[@]}" --method midas --schedule prop-2 --steps "$STEPS" --out "$OUT/midas" || exit 1
$PY - "$OUT" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
s = {m: json.loads((out / m / "training_summary.json").read_text()) for m in ("baseline", "eager", "midas")}
for m in ("eager", "baseline", "midas"):
    x = s[m]
    mfu = f"{x['steady_mfu']:.1%}" if x.get("steady_mfu") else "n/a (peak unknown)"
    tps = x.get("steady_tokens_per_s") or x["tokens_per_s"]
    print(f"trainer {m:8s}: {tps:>11,.0f} tokens/s steady, MFU {mfu}, compiled {x['compiled']}, "
          f"compile {x['compile_time_s']:.0f} s, train {x['train_time_s']:.1f} s, val loss {x['final_val_loss']:.3f}")
r = s["midas"]["train_time_s"] / s["baseline"]["train_time_s"]
R = s["midas"]["flop_ratio"]
print(f"MIDAS/baseline train time {r:.3f} vs FLOP ratio {R:.3f} (with head; {s['midas']['flop_ratio_no_head']:.3f} "
      f"without): measured/theory {r / R:.3f} (goal within 5%)")
EOF

# ---- 2. evaluator vs its floor: the trained model (answers in format: fast path for its own
#      answers, short decodes for wrong ones) and an untrained one (never stops: every row is
#      decoded to the answer budget) --------------------------------------------------------
TASKS=varassign-code-d0,varassign-code-d1,varassign-code-d2,copying-random
stamp "evaluator on the trained baseline: task targets and its own answers, vs the floor"
$PY "$REPO/benchmarks/bench_eval.py" --model "$OUT/baseline" --device "$EVAL_DEV" --threads 8 \
    --n "$EVAL_N" --shots 1 --tasks "$TASKS" --modes task,self --plain-n 5 --repeat 3 2>&1 | tee "$OUT/bench_eval.txt"
RANDOM_MODEL=random-small; [ "$DRY" = "1" ] && RANDOM_MODEL=random-tiny
stamp "evaluator on an untrained $RANDOM_MODEL (never stops), vs the floor"
$PY "$REPO/benchmarks/bench_eval.py" --model "$RANDOM_MODEL" --device "$EVAL_DEV" --threads 8 \
    --n "$EVAL_N" --shots 1 --tasks "$TASKS" --modes task --plain-n 5 --repeat 3 2>&1 | tee -a "$OUT/bench_eval.txt"
grep -E "^\[|rprim/floor|floor \(one|plain generate" "$OUT/bench_eval.txt" >> "$SUMMARY"

# ---- 3. the test suite, GPU visible ----------------------------------------------------------
stamp "pytest (CUDA tests included where a GPU is visible)"
XDIST=()
if $PY -c "import xdist" 2>/dev/null; then XDIST=(-n 8 --dist loadfile); fi
# shellcheck disable=SC2086
(cd "$OUT" && $PY -m pytest -q -p no:cacheprovider "${XDIST[@]}" $TESTS 2>&1) | tee "$OUT/pytest.txt" | tail -25
say "pytest: $(grep -E '^[0-9]+ (passed|failed)|passed|failed' "$OUT/pytest.txt" | tail -1)"
stamp "done"
echo "== summary ($SUMMARY)"
cat "$SUMMARY"
