"""The paper's fine-tuning protocol (Saunshi et al. 2024, appendix B.2), for any HF causal LM.

Per seed: draw a small training set from the ``train`` split (by default 32 depth-1 + 32
depth-2 examples of ``varassign-code``, 0-shot), fine-tune *all* parameters full-batch at a
constant learning rate (Adafactor, 1e-3) for 300 steps, and score a held-out test set (the
frozen suite's first 1000 ``test`` examples, disjoint from ``train`` by construction) at every
step of the evaluation window 200..300. The seed's score is the mean over the window; the
protocol reports mean and standard deviation over seeds.

Choices where the paper is silent (ours): the loss covers the answer tokens *and* the line
end that follows them (the task's first ``until`` string), so the model learns to stop as
greedy scoring requires; the prompt is masked out. Answer tokens are those the evaluator
verifies: the tokens after the prompt in the tokenization of prompt+answer when the prompt's
own tokens are a prefix of it, else the answer tokenized alone.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import rprim.primitives as P
from rprim.core import RprimError, atomic_folder, check_output_folder, write_json
from rprim.core.torch_util import OPTIMIZERS, make_optimizer

from .evaluate import evaluate, make_backend, task_names

@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of the protocol; defaults are the paper's."""

    tasks: tuple[str, ...] = ("varassign-code-d1", "varassign-code-d2")
    examples: int = 64            # training examples per seed, split evenly across tasks
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 300
    eval_start: int = 200         # evaluation window, inclusive
    eval_end: int = 300
    eval_every: int = 1           # evaluate every k-th step of the window (10 is a fast option)
    eval_n: int = 1000            # held-out test examples per task
    lr: float = 1e-3
    optimizer: str = "adafactor"
    shots: int = 0
    batch_size: int | str = "auto"  # evaluation batch size

    def check(self) -> None:
        if not self.tasks:
            raise RprimError("the task list is empty; pass --tasks varassign-code-d1,varassign-code-d2")
        if self.examples <= 0 or self.examples % len(self.tasks):
            raise RprimError(f"--examples {self.examples} does not split evenly across "
                             f"{len(self.tasks)} tasks; use a positive multiple of {len(self.tasks)}")
        if not self.seeds:
            raise RprimError("--seeds must be at least 1")
        if self.steps <= 0:
            raise RprimError(f"--steps must be positive (got {self.steps})")
        if not 0 <= self.eval_start <= self.eval_end <= self.steps:
            raise RprimError(f"the evaluation window {self.eval_start}..{self.eval_end} must lie "
                             f"within 0..{self.steps}; adjust --eval-start/--eval-end")
        if self.eval_every <= 0:
            raise RprimError(f"--eval-every must be positive (got {self.eval_every})")
        if self.optimizer not in OPTIMIZERS:
            raise RprimError(f"unknown optimizer {self.optimizer!r}; use {' or '.join(OPTIMIZERS)}")
        if self.lr <= 0:
            raise RprimError(f"--lr must be positive (got {self.lr})")

    @property
    def eval_steps(self) -> list[int]:
        return list(range(self.eval_start, self.eval_end + 1, self.eval_every))


@dataclass
class SeedRun:
    seed: int
    train_ids: list[str]
    curve: list[dict[str, Any]] = field(default_factory=list)  # step, loss, accuracy per task
    before: dict[str, float] = field(default_factory=dict)      # accuracy before fine-tuning
    window: dict[str, float] = field(default_factory=dict)      # mean accuracy over the window
    train_time_s: float = 0.0
    eval_time_s: float = 0.0


def training_set(cfg: FinetuneConfig, seed: int) -> list[dict[str, Any]]:
    """The seed's own training examples: ``examples / len(tasks)`` per task, split ``train``."""
    per_task = cfg.examples // len(cfg.tasks)
    records = []
    for name in cfg.tasks:
        try:
            records += P.get(name).generate(per_task, seed=seed, split="train", shots=cfg.shots)
        except RprimError as e:
            raise RprimError(f"cannot draw {per_task} training examples of {name}: {e}") from None
    return records


def encode(tok: Any, records: Sequence[dict[str, Any]]) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, labels), right-padded; labels mask the prompt and padding."""
    import torch

    rows, labels = [], []
    for r in records:
        end = r["until"][0] if r["until"] else ""
        answer = r["target_delimiter"] + r["target"]
        prompt = list(tok(r["prompt"])["input_ids"])
        full = list(tok(r["prompt"] + answer)["input_ids"])
        tail = (full[len(prompt):] if full[:len(prompt)] == prompt
                else list(tok(answer, add_special_tokens=False)["input_ids"]))
        tail += list(tok(end, add_special_tokens=False)["input_ids"]) if end else []
        rows.append(prompt + tail)
        labels.append([-100] * len(prompt) + tail)
    width = max(len(x) for x in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(zip(rows, labels)):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        lab[i, :len(y)] = torch.tensor(y)
    return ids, mask, lab


def _score(model: Any, tok: Any, cfg: FinetuneConfig) -> dict[str, float]:
    was_training = model.training
    res = evaluate(make_backend(model, tok, batch_size=cfg.batch_size), tasks=list(cfg.tasks),
                   shots=cfg.shots, n=cfg.eval_n)
    model.train(was_training)
    return {name: res.accuracy(name) for name in res.tasks}


def finetune_seed(base: Any, tok: Any, cfg: FinetuneConfig, seed: int,
                  records: Sequence[dict[str, Any]], log: Callable[[str], None] = lambda s: None,
                  save: Path | None = None) -> SeedRun:
    """One run: a fresh copy of ``base`` fine-tuned on the seed's own ``records``."""
    import torch

    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    run = SeedRun(seed, [r["id"] for r in records])
    device = next(model.parameters()).device
    ids, mask, labels = (t.to(device) for t in encode(tok, records))
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    t0 = time.perf_counter()
    run.before = _score(model, tok, cfg) if cfg.eval_start == 0 else {}
    run.eval_time_s += time.perf_counter() - t0
    wanted = set(cfg.eval_steps)
    model.train()
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        run.train_time_s += time.perf_counter() - t0
        point: dict[str, Any] = {"step": step, "loss": round(loss.item(), 6)}
        if step in wanted:
            t0 = time.perf_counter()
            point["accuracy"] = _score(model, tok, cfg)
            run.eval_time_s += time.perf_counter() - t0
            log(f"seed {seed} step {step}: loss {point['loss']:.4f} "
                + " ".join(f"{k} {v:.3f}" for k, v in point["accuracy"].items()))
        run.curve.append(point)
    evals = [p["accuracy"] for p in run.curve if "accuracy" in p]
    if cfg.eval_start == 0:  # step 0 is in the window: the model before any update
        evals.insert(0, run.before)
    run.window = {name: statistics.fmean(e[name] for e in evals) for name in cfg.tasks}
    if save is not None:
        model.save_pretrained(save)
        tok.save_pretrained(save)
    return run


def aggregate(runs: Sequence[SeedRun], tasks: Sequence[str]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per task and over the tasks' mean."""
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    per_run_mean = [statistics.fmean(r.window[t] for t in tasks) for r in runs]
    return {"overall": stats(per_run_mean),
            "per_task": {t: stats([r.window[t] for r in runs]) for t in tasks}}


def finetune(model: Any, cfg: FinetuneConfig = FinetuneConfig(), tokenizer: Any = None,
             log: Callable[[str], None] = lambda s: None, save: str | Path | None = None,
             trust_remote_code: bool = False) -> dict[str, Any]:
    """Run the protocol for every seed; returns the results dict (see ``save_results``)."""
    cfg = FinetuneConfig(**{**asdict(cfg), "tasks": tuple(task_names(list(cfg.tasks)))})
    cfg.check()
    data = {seed: training_set(cfg, seed) for seed in cfg.seeds}  # fail before loading a model
    engine = make_backend(model, tokenizer, trust_remote_code=trust_remote_code)
    base, tok = engine.model, engine.tok
    if not hasattr(base, "get_output_embeddings") or base.get_output_embeddings() is None:
        raise RprimError("the model has no causal-LM head to fine-tune; pass a *ForCausalLM model")
    start = time.perf_counter()
    runs = []
    for seed in cfg.seeds:
        out = Path(save) / f"seed-{seed}" if save else None
        runs.append(finetune_seed(base, tok, cfg, seed, data[seed], log, out))
        log(f"seed {seed}: " + " ".join(f"{k} {v:.3f}" for k, v in runs[-1].window.items()))
    from rprim import __version__

    return {"config": asdict(cfg), "model": engine.describe(), "rprim_version": __version__,
            "wall_time_s": round(time.perf_counter() - start, 3),
            "train_time_s": round(sum(r.train_time_s for r in runs), 3),
            "eval_time_s": round(sum(r.eval_time_s for r in runs), 3),
            "aggregate": aggregate(runs, cfg.tasks), "runs": [asdict(r) for r in runs]}


def table(results: dict[str, Any]) -> str:
    """Mean ± std over seeds, per task and overall."""
    agg = results["aggregate"]
    seeds = len(results["runs"])
    lines = [f"{'task':<22} {'accuracy (mean ± std over ' + str(seeds) + ' seeds)'}"]
    for name, s in agg["per_task"].items():
        lines.append(f"{name:<22} {s['mean']:.3f} ± {s['std']:.3f}")
    lines.append(f"{'overall':<22} {agg['overall']['mean']:.3f} ± {agg['overall']['std']:.3f}")
    return "\n".join(lines)


RESULTS_KIND = "finetune"


def check_results_folder(out: str | Path) -> Path:
    """The checks made before any fine-tuning: ``out`` can hold the results."""
    return check_output_folder(out, RESULTS_KIND, legacy=("results.json",))


def save_results(results: dict[str, Any], out: str | Path) -> Path:
    """``out/results.json``, written atomically (other files in ``out`` are kept)."""
    with atomic_folder(check_results_folder(out), kind=RESULTS_KIND) as tmp:
        write_json(tmp / "results.json", results)
    return Path(out) / "results.json"
