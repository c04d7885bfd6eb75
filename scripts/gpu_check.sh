#!/usr/bin/env bash
# GPU smoke test and throughput check for the rprim trainer (one GPU, no internet).
#
#   bash scripts/gpu_check.sh            # ~2 x 3-4 minutes on an H100
#   STEPS=300 bash scripts/gpu_check.sh  # shorter
#
# Trains the `small` preset (12 layers, d 768, ~85M parameters) with the baseline and with MIDAS
# (PROP-2, block size 3) on the Python standard library source, then prints tokens/s, MFU
# (bf16 dense peak of the detected GPU), final losses, and MIDAS's measured time ratio next to
# its FLOP ratio; then scores both models with `rprim eval` on the transformers backend. Needs torch (CUDA), transformers, tokenizers, safetensors, tqdm, click, numpy
# already installed; installs rprim itself with `pip install --no-deps -e .` if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STEPS=${STEPS:-600}
OUT=${OUT_DIR:-/tmp/rprim-gpu-check}
EXTRA=${EXTRA:-}   # e.g. EXTRA="--set compile=true"

if ! $PY -c "import rprim.model_zoo" 2>/dev/null; then
  $PY -m pip install --no-deps --no-build-isolation -e . >/dev/null
fi
$PY - <<'PYEOF'
import torch, transformers
assert torch.cuda.is_available(), "no CUDA device visible"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}")
PYEOF

$PY - <<'PYEOF'
import importlib.util
missing = [m for m in ("click", "jinja2", "numpy", "tokenizers", "safetensors", "tqdm", "pandas")
           if importlib.util.find_spec(m) is None]
assert not missing, f"missing modules (no internet here): {missing}"
PYEOF

mkdir -p "$OUT"
for METHOD in baseline midas; do
  echo "== $METHOD: $STEPS steps of preset small on stdlib-python"
  $PY -m rprim train --preset small --method "$METHOD" --schedule prop-2 --corpus stdlib-python \
      --steps "$STEPS" --out "$OUT/$METHOD" --overwrite --cache-dir "$OUT/cache" --quiet \
      --set eval_every=200 --set ckpt_every=100000 $EXTRA
done

$PY - "$OUT" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
res = {}
for m in ("baseline", "midas"):
    s = json.loads((out / m / "training_summary.json").read_text())
    rows = [json.loads(l) for l in (out / m / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in rows[2:] if r.get("tokens_per_s")]
    tps = statistics.median(r["tokens_per_s"] for r in steady) if steady else s["tokens_per_s"]
    full = [r["mfu"] for r in steady if r["depth"] == s["n_layers"] and r.get("mfu")]
    mfu = statistics.median(full) if full else s["mfu"]
    res[m] = s
    print(f"{m:9s} tokens/s {tps:>10,.0f} (median, steady state)  MFU {mfu if mfu is None else f'{mfu:.1%}'} at full depth"
          f"  train loss {s['final_train_loss']:.3f}  val loss {s['final_val_loss']:.3f}"
          f"  train time {s['train_time_s']:.0f}s  wall {s['wall_time_s']:.0f}s")
r = res["midas"]["train_time_s"] / res["baseline"]["train_time_s"]
print(f"MIDAS/baseline train time {r:.3f}; FLOP ratio {res['midas']['flop_ratio']:.3f} with head, "
      f"{res['midas']['flop_ratio_no_head']:.3f} without")
PYEOF

# Both models through the transformers backend (the suite at 1 shot keeps prompts within
# the small preset's 512-token context).
for METHOD in baseline midas; do
  echo "== rprim eval $METHOD (transformers backend)"
  $PY -m rprim eval --model "$OUT/$METHOD" --backend hf --shots 1 --n 200 --out "$OUT/$METHOD-eval"
done
