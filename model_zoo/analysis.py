"""The paper's two layer analyses (Saunshi et al. 2024, section 6): block similarity, linearity.

**Block similarity** (Figure 3). For every pair of blocks, the cosine similarity of their
first feed-forward weights, flattened. Our choices, where the paper is silent:

- "first feed-forward weights" of a layer = the matrices that map the residual stream into the
  MLP's hidden units: for Llama's SwiGLU MLP, ``gate_proj`` and ``up_proj`` together (the gated
  MLP's two input projections; T5's ``wi_0``/``wi_1``), not ``down_proj``;
- a block of b layers is the concatenation of its b layers' vectors (b = 1 compares layers);
- the default b is the run's block size (from ``training_summary.json``), else 1.

Exact copies have similarity 1 (a test checks it). For a run folder the matrix is computed for
each growth snapshot (the last snapshot of each stage: the model just before it grew) and for
the final model, so the copying pattern can be followed as depth grows.

**Linearity** (Figure 6). For each layer i, with Y_i its input (the residual stream) and
U_i = Y_{i+1} - Y_i its residual update, fit U_i ~ Y_i W + c by least squares (with an
intercept; float64) on the first half of the tokens and score it on the other half:
R^2 = 1 - sum ||U - U_hat||^2 / sum ||U - mean(U)||^2 (mean over the scored tokens), and the
mean over scored tokens of cos(U_hat, U). An exactly linear layer gives R^2 = 1 (a test checks
it). The text: ``--text FILE``, else the run's validation windows when the path is a run
folder, else what the caller supplies (``rprim analyze`` and ``rprim study``: solved primitives
problems from the ``test`` split, 6 per document like the pretraining mix). Layer inputs and outputs are read with forward hooks on the decoder layers,
so the numbers do not depend on how a transformers version reports hidden states.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rprim.core import RprimError

SUMMARY = "training_summary.json"
SNAPSHOT = "snapshot.json"
# the MLP input projections of common architectures: Llama/Mistral/Qwen (gate_proj, up_proj),
# GPT-2 (c_fc), OPT/Phi (fc1), GPT-J (fc_in), T5 (wi, wi_0, wi_1), NeoX (dense_h_to_4h)
_FFN = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.(?:mlp|feed_forward|ffn|DenseReluDense)\."
                  r"(gate_proj|up_proj|c_fc|fc1|fc_in|w1|w3|wi|wi_0|wi_1|dense_h_to_4h)\.weight$")
_ORDER = ("gate_proj", "w1", "wi_0", "wi", "c_fc", "fc1", "fc_in", "dense_h_to_4h", "up_proj", "w3", "wi_1")


# ----------------------------------------------------------------------------- model folders
def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of an HF model folder (single file or sharded)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise RprimError(f"{folder} has no .safetensors weights; pass a Hugging Face model folder "
                         "saved with save_pretrained (or a run folder of rprim train)")
    return files


def check_model_folder(path: str | Path) -> Path:
    """RprimError unless ``path`` is a local model folder (with config.json and safetensors)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RprimError(f"--model {p} does not exist; pass a model or run folder")
    if not p.is_dir():
        raise RprimError(f"--model {p} is a file; pass a Hugging Face model folder or a run folder")
    if not (p / "config.json").is_file():
        raise RprimError(f"{p} has no config.json; pass a Hugging Face model folder or a run folder "
                         "of rprim train (a finished run)")
    weight_files(p)
    return p


def run_block_size(folder: Path) -> int | None:
    """The block size of the run that wrote ``folder`` (a run folder or one of its snapshots)."""
    for cand in (folder / SUMMARY, folder.parent.parent / SUMMARY):
        try:
            data = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        b = data.get("block_size") or (data.get("config") or {}).get("block_size")
        if isinstance(b, int) and b > 0:
            return b
    return None


def growth_snapshots(run: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, snapshot.json) of the models just before each growth, ordered by step: the
    snapshots marked ``before_growth``, else (older runs) the last snapshot of each stage
    shallower than the final model."""
    snaps = []
    for sub in sorted((run / "snapshots").glob("step-*")):
        try:
            meta = json.loads((sub / SNAPSHOT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and (sub / "config.json").is_file():
            snaps.append((sub, meta))
    snaps.sort(key=lambda x: int(x[1].get("step", 0)))
    if any("before_growth" in m for _, m in snaps):
        return [(p, m) for p, m in snaps if m.get("before_growth")]
    by_stage: dict[Any, tuple[Path, dict[str, Any]]] = {}
    for p, m in snaps:
        by_stage[m.get("stage", m.get("depth"))] = (p, m)   # sorted by step: the last one wins
    final_depth = _depth(run)
    return sorted(((p, m) for p, m in by_stage.values()
                   if m.get("depth") is None or int(m["depth"]) < final_depth),
                  key=lambda x: int(x[1].get("step", 0)))


def _depth(folder: Path) -> int:
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    raise RprimError(f"{folder}/config.json names no layer count (num_hidden_layers)")


# ----------------------------------------------------------------------------- similarity
def ffn_vectors(folder: Path) -> list[np.ndarray]:
    """Per layer, its first feed-forward weights flattened (float64), in layer order."""
    from safetensors import safe_open

    parts: dict[int, dict[str, np.ndarray]] = {}
    for f in weight_files(folder):
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                m = _FFN.search(key)
                if m:
                    parts.setdefault(int(m.group(1)), {})[m.group(2)] = \
                        fh.get_tensor(key).float().numpy().astype(np.float64).ravel()
    if not parts:
        raise RprimError(f"{folder}: no feed-forward input weights found (looked for mlp.gate_proj / "
                         "up_proj and the like); block similarity needs a transformer with MLP layers")
    layers = sorted(parts)
    if layers != list(range(len(layers))):
        raise RprimError(f"{folder}: feed-forward weights of layers {layers} are not numbered 0..n-1")
    return [np.concatenate([parts[i][k] for k in sorted(parts[i], key=_ORDER.index)]) for i in layers]


def block_similarity(vectors: Sequence[np.ndarray], block_size: int = 1) -> np.ndarray:
    """Cosine similarity matrix between blocks of ``block_size`` consecutive layers (each
    block's layer vectors concatenated)."""
    if block_size < 1 or len(vectors) % block_size:
        raise RprimError(f"block size {block_size} does not divide the model's {len(vectors)} layers; "
                         "pass --block-size a divisor of the depth")
    blocks = [np.concatenate(vectors[i:i + block_size]) for i in range(0, len(vectors), block_size)]
    mat = np.stack(blocks)
    norms = np.linalg.norm(mat, axis=1)
    norms[norms == 0] = 1.0
    unit = mat / norms[:, None]
    sim = unit @ unit.T
    return np.clip(sim, -1.0, 1.0)


def similarity(path: str | Path, block_size: int | None = None) -> dict[str, Any]:
    """Block similarity of a model folder, or of each growth snapshot and the final model of a
    run folder. Returns the JSON-ready result (``snapshots``: label, step, depth, matrix)."""
    folder = check_model_folder(path)
    b = block_size or run_block_size(folder) or 1
    depth = _depth(folder)
    if depth % b:
        raise RprimError(f"block size {b} does not divide the model's {depth} layers; "
                         "pass --block-size a divisor of the depth")
    items = [(p, m, f"step {m.get('step')} (depth {m.get('depth')})") for p, m in growth_snapshots(folder)]
    final_meta = _final_meta(folder)
    items.append((folder, final_meta, "final" if not items else f"final (depth {depth})"))
    snaps = []
    for p, meta, label in items:
        sim = block_similarity(ffn_vectors(p), b)
        snaps.append({"label": label, "path": str(p), "step": meta.get("step"),
                      "depth": _depth(p), "blocks": len(sim), "similarity": sim.round(6).tolist()})
    return {"model": str(folder), "block_size": b,
            "matrix": "gate_proj and up_proj of each layer, concatenated over the block",
            "snapshots": snaps}


def _final_meta(folder: Path) -> dict[str, Any]:
    for name in (SUMMARY, SNAPSHOT):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return {"step": data.get("steps", data.get("step"))}
    return {}


# ----------------------------------------------------------------------------- linearity
def fit_linear(x_fit: np.ndarray, u_fit: np.ndarray, x_score: np.ndarray, u_score: np.ndarray,
               intercept: bool = True) -> tuple[float, float]:
    """(R^2, mean cosine) on the scored rows of the least-squares map fitted on the fit rows."""
    x_fit, u_fit = np.asarray(x_fit, np.float64), np.asarray(u_fit, np.float64)
    x_score, u_score = np.asarray(x_score, np.float64), np.asarray(u_score, np.float64)
    if intercept:
        x_fit = np.hstack([x_fit, np.ones((len(x_fit), 1))])
        x_score = np.hstack([x_score, np.ones((len(x_score), 1))])
    w, *_ = np.linalg.lstsq(x_fit, u_fit, rcond=None)
    pred = x_score @ w
    res = float(((u_score - pred) ** 2).sum())
    tot = float(((u_score - u_score.mean(axis=0)) ** 2).sum())
    r2 = 1.0 - res / tot if tot > 0 else (1.0 if res == 0 else 0.0)
    num = (pred * u_score).sum(axis=1)
    den = np.linalg.norm(pred, axis=1) * np.linalg.norm(u_score, axis=1)
    ok = den > 0
    cos = float((num[ok] / den[ok]).mean()) if ok.any() else 0.0
    return r2, cos


def decoder_layers(model: Any) -> Sequence[Any]:
    """The list of transformer blocks of a causal LM (Llama-style ``model.model.layers``, or
    ``transformer.h``)."""
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise RprimError(f"cannot find the decoder layers of a {type(model).__name__}; linearity "
                     "supports Llama-style (model.layers) and GPT-2-style (transformer.h) models")


def layer_io(model: Any, windows: Any, skip_first: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer, its inputs and residual updates over all ``windows`` tokens (float32 arrays
    of shape [tokens, d]); position 0 of each window is left out when ``skip_first`` (its
    residual stream is an outlier in trained models: the attention sink)."""
    import torch

    layers = decoder_layers(model)
    ins: list[list[np.ndarray]] = [[] for _ in layers]
    ups: list[list[np.ndarray]] = [[] for _ in layers]
    start = 1 if skip_first else 0

    def hook(i: int):
        def fn(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, (tuple, list)) else output
            x, y = x[:, start:].float(), y[:, start:].float()
            ins[i].append(x.reshape(-1, x.shape[-1]).cpu().numpy())
            ups[i].append((y - x).reshape(-1, x.shape[-1]).cpu().numpy())
        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for w in windows:
                model(input_ids=w.reshape(1, -1).to(device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return [np.concatenate(v) for v in ins], [np.concatenate(v) for v in ups]


def layer_linearity(model: Any, windows: Any, intercept: bool = True) -> list[dict[str, Any]]:
    """R^2 and cosine per layer, fitted on the first half of the windows, scored on the rest
    (one window: its first and second half of tokens)."""
    xs, us = layer_io(model, windows)
    n = len(xs[0])
    cut = n // 2
    if len(windows) > 1:
        per = n // len(windows)
        cut = per * (len(windows) // 2)
    out = []
    for i, (x, u) in enumerate(zip(xs, us)):
        r2, cos = fit_linear(x[:cut], u[:cut], x[cut:], u[cut:], intercept)
        out.append({"layer": i, "r2": r2, "cosine": cos})
    return out


def _windows_from_ids(ids: Sequence[int], seq_len: int, count: int) -> list[Any]:
    import torch

    usable = min(count, len(ids) // seq_len)
    if usable < 1:
        raise RprimError(f"the text has {len(ids)} tokens, fewer than one window of {seq_len}; "
                         "give a longer --text file")
    return [torch.tensor(ids[i * seq_len:(i + 1) * seq_len], dtype=torch.long) for i in range(usable)]


def text_windows(tok: Any, text: str | Sequence[str], seq_len: int, count: int) -> list[Any]:
    """``count`` windows of ``seq_len`` tokens from a text (or documents joined by eos)."""
    docs = [text] if isinstance(text, str) else list(text)
    ids: list[int] = []
    eos = tok.eos_token_id
    for d in docs:
        ids += list(tok(d, add_special_tokens=False)["input_ids"])
        if eos is not None and not isinstance(text, str):
            ids.append(eos)
    return _windows_from_ids(ids, seq_len, count)


def validation_windows(run: Path, tok: Any, count: int) -> tuple[list[Any], str] | None:
    """The run's own held-out windows (its validation slice), or None when its corpus cannot
    be found any more (moved files, another machine)."""
    try:
        summary = json.loads((run / SUMMARY).read_text(encoding="utf-8"))
        cfg = dict(summary["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        from rprim.core import cache_dir as default_cache
        from rprim.model_zoo.corpora import resolve_corpus
        from rprim.model_zoo.data import PackedTokens, cached_token_file
        from rprim.model_zoo.tokenizer import tokenizer_hash

        cache = Path(cfg["cache_dir"]) if cfg.get("cache_dir") else default_cache()
        corpus = resolve_corpus(cfg["corpus"], cache, cfg.get("max_corpus_bytes"))
        tfile = cached_token_file(corpus.documents, tok, corpus.fingerprint(), tokenizer_hash(tok), cache,
                                  {"corpus": corpus.names, "licences": corpus.licences,
                                   "max_corpus_bytes": corpus.max_bytes})
        data = PackedTokens(tfile.array(), int(cfg["seq_len"]), float(cfg["val_fraction"]))
    except (RprimError, OSError, KeyError, ValueError, TypeError):
        return None
    n = min(count, data.n_val)
    rows = data.val_windows(0, n)
    return [r[:-1] for r in rows], f"{n} validation window(s) of the run ({', '.join(corpus.names)})"


def linearity(path: str | Path, text_file: str | Path | None = None, tokens: int | None = None,
              seq_len: int | None = None, device: str = "cpu",
              fallback: tuple[str, Callable[[], list[str]]] | None = None) -> dict[str, Any]:
    """Per-layer linearity of a model folder (see the module docstring); JSON-ready.

    Text: ``text_file``, else the run's validation windows, else ``fallback`` = (description,
    function returning documents); the caller supplies it (``rprim.study`` gives solved
    primitives problems), so this package does not depend on the primitives here."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = check_model_folder(path)
    text = None
    if text_file is not None:
        text = read_text(Path(text_file))
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
    except (OSError, ValueError) as e:
        raise RprimError(f"cannot load the model in {folder}: {str(e).splitlines()[0]}") from None
    d = int(model.config.hidden_size)
    ctx = int(getattr(model.config, "max_position_embeddings", 1024) or 1024)
    seq = min(seq_len or ctx, ctx, 1024)
    want = tokens or max(4096, 8 * (d + 1))   # half fits, half scores: >= 4 (d + 1) rows each
    count = max(2, -(-want // (seq - 1)))
    source = None
    if text is not None:
        windows, source = text_windows(tok, text, seq, count), f"--text {text_file}"
    elif (folder / SUMMARY).is_file():
        got = validation_windows(folder, tok, count)
        if got is not None:
            windows, source = got
    if source is None:
        if fallback is None:
            raise RprimError(f"{folder} is not a run folder with its corpus at hand; pass --text FILE "
                             "with text to run the model on")
        source, make_docs = fallback
        windows = text_windows(tok, make_docs(), seq, count)
    layers = layer_linearity(model, windows)
    n = sum(len(w) - 1 for w in windows)
    return {"model": str(folder), "text": source, "windows": len(windows), "window_tokens": len(windows[0]),
            "tokens_fit": n // 2, "tokens_score": n - n // 2,
            "fit": "least squares with intercept, fitted on the first half of the windows, scored "
                   "on the second; position 0 of each window left out",
            "layers": layers}


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``--text``; RprimError for a missing, unreadable or empty file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RprimError(f"cannot read --text {path} ({type(e).__name__}); pass a UTF-8 text file") from None
    if not text.strip():
        raise RprimError(f"--text {path} is empty; pass a file with some text")
    return text
