"""The paper's fine-tuning protocol (Saunshi et al. 2024, appendix B.2), for any HF causal LM.

Per seed: draw a small training set from the ``train`` split (by default 32 depth-1 + 32
depth-2 examples of ``varassign-code``, 0-shot), fine-tune *all* parameters full-batch at a
constant learning rate (Adafactor, 1e-3) for 300 steps, and score a held-out test set (the
frozen suite's first 1000 ``test`` examples, disjoint from ``train`` by construction) at every
step of the evaluation window, by default the last third of the steps (200..300 of 300, the
paper's window). The seed's score is the mean over the window; the protocol reports mean and
standard deviation over seeds.

Choices where the paper is silent (ours):

- The loss covers the answer tokens *and* the line end that follows them (the task's first
  ``until`` string), so the model learns to stop as greedy scoring requires; the prompt is
  masked out. Answer tokens are those the evaluator verifies: the tokens after the prompt in
  the tokenization of prompt+answer when the prompt's own tokens are a prefix of it, else the
  answer tokenized alone.
- Adafactor is ``torch.optim.Adafactor`` (through :func:`rprim.core.torch_util.make_optimizer`,
  the same algorithm the trainer uses). At ``lr=1e-3`` its step on a parameter is
  ``1e-3 * max(1e-3, RMS(parameter))`` times the clipped, second-moment-normalised gradient:
  a step *relative* to the parameter's scale (``min(lr, 1/sqrt(t))`` stays 1e-3 for the first
  million steps, so the rate is constant), no momentum, update clipping at 1, second-moment
  decay ``1 - t^-0.8``. These are the defaults of the T5X/Flax Adafactor
  (``multiply_by_parameter_scale=True``), the optimizer of Google's training stack in which the
  paper's constant 1e-3 is stated (they factor the second moment only of matrices with both
  sides >= 128; torch factors every matrix). ``--optimizer adamw`` is the alternative.
- The copy that is trained keeps float32 weights (updates of 1e-3 of a weight vanish in
  bfloat16, whose resolution is 4e-3); on a GPU with bfloat16 the forward and backward passes
  and the evaluations run under bfloat16 autocast.
- "Full batch" is kept for any ``--examples``: the gradient of the whole batch is accumulated
  over micro-batches sized to the free memory (``--micro-batch-size auto``), each weighted by
  its share of the batch's answer tokens, so a large training set runs in bounded memory and
  micro-batching changes only floating-point rounding.

Long runs are safe to interrupt: with ``out``, every finished seed is written to
``out/results.json`` at once (atomically, ``complete: false`` until the last seed), and
``resume=True`` runs only the missing seeds after checking that the protocol settings, the
data generator and the model's weights are those of the saved seeds.

This module holds the protocol itself: each seed's training and held-out data, one seed's run
(:func:`finetune_seed`), and the public :func:`finetune`. Beside it in
``rprim.evaluators.finetune``, by what they hold: ``config`` (the settings,
:class:`FinetuneConfig`), ``memory`` (free memory, memory per token, micro-batch sizing and
slicing), ``results`` (the per-seed record, the results file, the output checks, resuming) and
``progress`` (the bar with an ETA). The package's front door is ``finetune``,
``FinetuneConfig`` and ``FinetuneResults``.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import rprim.primitives as P
from rprim.core import RprimError, atomic_folder, folder_lock
from rprim.core.torch_util import make_optimizer

from rprim.evaluators.data import (ANSWER_MARGIN, EvalSet, TaskData, continuation, eval_set,
                                   task_data)
from rprim.evaluators.engine.hf import HFBackend
from rprim.evaluators.engine.spec import ModelSpec
from rprim.evaluators.evaluate import make_backend, score

from .config import FinetuneConfig
from .memory import free_memory, memory_per_token, micro_batch_size, micro_batches, state_bytes
from .progress import FinetuneBar, Log
from .results import (SAVE_KIND, FinetuneResults, SeedRun, check_results_folder, check_same_model,
                      check_save_folder, finished_runs, previous_run, results_of,
                      weights_fingerprint)


# ---------------------------------------------------------------------------------------------
# data


def training_set(cfg: FinetuneConfig, seed: int) -> list[dict[str, Any]]:
    """The seed's own training examples: ``examples / len(tasks)`` per task, split ``train``."""
    per_task = cfg.examples // len(cfg.tasks)
    records = []
    for name in cfg.tasks:
        try:
            records += P.get(name).generate(per_task, seed=seed, split="train", shots=cfg.shots)
        except RprimError as e:  # the generator's problem, with this command's fix
            raise RprimError(f"cannot draw {per_task} training examples of {name}: "
                             f"{_problem(e)}; use fewer --examples") from None
    return records


def _problem(e: RprimError) -> str:
    """The problem part of a generator's error, without its fix (which names its own flags)."""
    return str(e).split(";")[0]


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    """What training needs of a record (a large --examples keeps no metadata in memory)."""
    return {k: r[k] for k in ("id", "prompt", "target_delimiter", "target", "until")}


def eval_tasks(cfg: FinetuneConfig) -> list[TaskData]:
    """The held-out examples every evaluation scores, drawn once (as ``evaluate`` draws them)."""
    out = []
    for name in cfg.tasks:
        try:
            out.append(task_data(name, cfg.shots, cfg.eval_n, 0))
        except RprimError as e:
            raise RprimError(f"cannot draw {cfg.eval_n} held-out examples of {name}: "
                             f"{_problem(e)}; use a smaller --eval-n") from None
    return out


def encode(tok: Any, records: Sequence[dict[str, Any]]) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, labels), right-padded; labels mask the prompt and padding."""
    import torch

    rows, labels = [], []
    for r in records:
        end = r["until"][0] if r["until"] else ""
        answer = continuation(r)
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


# ---------------------------------------------------------------------------------------------
# guard: the model's context (the memory guard is in .memory)


def check_context(spec: ModelSpec, evals: EvalSet, train_width: int) -> int:
    """RprimError unless the training rows and every evaluation prompt plus its answer budget
    fit the model's context (the evaluator refuses the same prompts, but only at the first
    evaluation step, after most of the training). Returns the evaluation's token count."""
    spec.fits(train_width, 0, "a training example")
    prompts = sum(spec.check_prompts(evals, longest=None))
    return prompts + sum(len(t.records) * (evals.budgets[t.name] - ANSWER_MARGIN) for t in evals.tasks)


# ---------------------------------------------------------------------------------------------
# training


def train_step(model: Any, batches: Sequence[tuple[Any, Any, Any, int]], opt: Any,
               autocast: Any = contextlib.nullcontext, tick: Callable[[int], None] | None = None) -> float:
    """One full-batch step: the mean loss over all answer tokens of the batch, its gradient
    accumulated over ``batches`` (each micro-batch's mean weighted by its share of tokens)."""
    tokens = sum(b[3] for b in batches)
    total = None
    for ids, mask, labels, n in batches:
        if n:
            with autocast():
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            part = loss * (n / tokens)  # exactly the loss when there is one micro-batch
            part.backward()
            total = part.detach() if total is None else total + part.detach()
        if tick is not None:
            tick(int(mask.sum()))
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(total) if total is not None else 0.0


def _autocast(device: Any) -> Any:
    """bfloat16 autocast on a GPU that has it (weights stay fp32), else nothing."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def _score(engine: Any, evals: EvalSet, autocast: Any = contextlib.nullcontext,
           tick: Callable[[int], None] | None = None) -> dict[str, float]:
    """Accuracy per task of the engine's model as it is now (the backend reads the weights
    the optimizer just changed; it holds no state that depends on them)."""
    was_training = engine.model.training
    with autocast():
        scores = score(engine, evals, on_progress=tick)[0]
    engine.model.train(was_training)
    return {name: s["accuracy"] for name, s in scores.items()}


@dataclass
class SeedData:
    """What one seed trains on, prepared before any seed runs."""

    seed: int
    records: list[dict[str, Any]]
    encoded: tuple[Any, Any, Any]  # ids, mask, labels (CPU)
    micro: int = 1


def finetune_seed(base: Any, spec: ModelSpec, cfg: FinetuneConfig, sd: SeedData, evals: EvalSet,
                  log: Log = lambda s: None, save: Path | None = None,
                  progress: "FinetuneBar | None" = None) -> SeedRun:
    """One run: a fresh fp32 copy of ``base`` fine-tuned on the seed's own records, scored on
    ``evals`` (built once for all seeds) through one backend over that copy."""
    import torch

    device = next(base.parameters()).device
    run = SeedRun(sd.seed, [r["id"] for r in sd.records])
    batches = micro_batches(*(t.to(device) for t in sd.encoded), sd.micro)
    autocast = _autocast(device)
    p = progress or FinetuneBar(False)
    wanted = set(cfg.eval_steps)

    def score(model: Any) -> dict[str, float]:
        t0 = time.perf_counter()
        accuracy = _score(engine, evals, autocast, p.eval_tick)
        run.eval_time_s += time.perf_counter() - t0
        return accuracy

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(sd.seed)  # dropout, if the model has any
        model = copy.deepcopy(base).float()
        engine = HFBackend(model, batch_size=cfg.batch_size, spec=spec)
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
        p.at(sd.seed, 0)
        if 0 in wanted:  # step 0 is in the window: the model before any update
            run.before = score(model)
        model.train()
        for step in range(1, cfg.steps + 1):
            p.at(sd.seed, step)
            t0 = time.perf_counter()
            point: dict[str, Any] = {"step": step, "loss": round(
                _guarded_step(model, batches, opt, autocast, p.train_tick), 6)}
            run.train_time_s += time.perf_counter() - t0
            if step in wanted:
                point["accuracy"] = score(model)
                p.note(point)
                log(f"seed {sd.seed} step {step}: loss {point['loss']:.4f} "
                    + " ".join(f"{k} {v:.3f}" for k, v in point["accuracy"].items()))
            run.curve.append(point)
    scored = ([run.before] if 0 in wanted else []) + [q["accuracy"] for q in run.curve if "accuracy" in q]
    run.window = {name: statistics.fmean(e[name] for e in scored) for name in cfg.tasks}
    if save is not None:
        with atomic_folder(save, kind=SAVE_KIND) as tmp:
            model.save_pretrained(tmp)
            spec.tokenizer.save_pretrained(tmp)
    return run


def _guarded_step(model: Any, batches: Sequence[tuple[Any, Any, Any, int]], opt: Any, autocast: Any,
                  tick: Callable[[int], None]) -> float:
    import torch

    try:
        return train_step(model, batches, opt, autocast, tick)
    except torch.cuda.OutOfMemoryError:
        raise RprimError("out of GPU memory in a training step; pass a smaller --micro-batch-size "
                         f"(this run used {batches[0][0].shape[0]})") from None


# ---------------------------------------------------------------------------------------------
# the protocol


def _prepare(base: Any, spec: ModelSpec, cfg: FinetuneConfig, data: dict[int, list[dict[str, Any]]],
             evals: EvalSet, progress: bool) -> tuple[list[SeedData], FinetuneBar]:
    """Encode every seed's data, refuse what cannot fit (context, memory), size the
    micro-batches and the progress bar's work."""
    encoded = {s: encode(spec.tokenizer, recs) for s, recs in data.items()}
    width = max(e[0].shape[1] for e in encoded.values())
    eval_tokens = check_context(spec, evals, width)
    device = next(base.parameters()).device
    micro = micro_batch_size(cfg.micro_batch_size, cfg.examples, width,
                             memory_per_token(base.config, width), state_bytes(base, cfg.optimizer),
                             free_memory(device))
    seed_sets = [SeedData(s, data[s], encoded[s], micro) for s in data]
    train_units = cfg.steps * sum(3.0 * int(e[1].sum()) for e in encoded.values())
    eval_units = float(len(cfg.eval_steps) * len(seed_sets) * eval_tokens)
    bar = FinetuneBar(progress, train_units, eval_units, evals.total,
                   seeds=len(seed_sets), steps=cfg.steps)
    return seed_sets, bar


def _intro_line(cfg: FinetuneConfig, seed_sets: list[SeedData], evals: EvalSet, out: str | Path | None) -> str:
    """What is about to run, said before the first (possibly long) step."""
    return (f"fine-tuning {len(seed_sets)} seed(s) x {cfg.steps} steps on {cfg.examples} examples "
            f"(micro-batches of {seed_sets[0].micro}), evaluating {evals.total} "
            f"examples at {len(cfg.eval_steps)} steps per seed; "
            + (f"finished seeds go to {out}" if out is not None else
               "no --out: results are only returned (pass --out DIR to keep finished seeds)"))


def _run_seeds(base: Any, spec: ModelSpec, cfg: FinetuneConfig, seed_sets: list[SeedData], evals: EvalSet, bar: FinetuneBar,
               model: dict[str, Any], runs: dict[int, SeedRun], old_wall: float, log: Log,
               out: str | Path | None, save: str | Path | None) -> FinetuneResults:
    """Fine-tune the missing seeds; each finished seed is written to ``out`` at once."""
    start = time.perf_counter()
    results: FinetuneResults | None = None
    try:
        for sd in seed_sets:
            target = Path(save).expanduser() / f"seed-{sd.seed}" if save else None
            runs[sd.seed] = finetune_seed(base, spec, cfg, sd, evals, lambda m: bar.write(log, m), target, bar)
            results = results_of(cfg, model, runs, old_wall + time.perf_counter() - start,
                                 seed_sets[0].micro)
            if out is not None:
                results.save(out)
            bar.write(log, f"seed {sd.seed}: " + " ".join(
                f"{k} {v:.3f}" for k, v in runs[sd.seed].window.items()))
    finally:
        bar.close(finished=results is not None and results.complete)
    assert results is not None
    return results


def finetune(model: Any, cfg: FinetuneConfig = FinetuneConfig(), tokenizer: Any = None,
             log: Log = lambda s: None, save: str | Path | None = None,
             trust_remote_code: bool = False, *, out: str | Path | None = None,
             resume: bool = False, progress: bool = False, device: str = "auto",
             before_load: Callable[[], None] | None = None) -> FinetuneResults:
    """Run the protocol for every seed; returns its :class:`FinetuneResults`.

    ``out``: write ``results.json`` there after every finished seed (an interrupted run keeps
    them); ``resume``: continue the run in ``out`` with its missing seeds. ``save``: each
    seed's fine-tuned model in ``save/seed-N``. ``progress``: a bar with an ETA on stderr.
    ``before_load``: called after every check, right before the model loads (the CLI imports
    torch and quiets library output there, so bad input fails without that wait).
    Every check (settings, data, folders, the run to resume) comes before the model loads;
    the model's context and the memory a step needs are checked before any training.
    """
    cfg = cfg.resolved()
    old = previous_run(out, cfg, resume)
    if out is not None:
        check_results_folder(out)
    if save is not None:
        check_save_folder(save, out)
    runs = finished_runs(old)
    todo = [s for s in cfg.seeds if s not in runs]
    if old is not None and not todo:
        log(f"the run in {out} is complete ({len(runs)} seeds); nothing to do")
        return FinetuneResults.from_dict(old)
    data = {s: [_slim(r) for r in training_set(cfg, s)] for s in todo}
    tasks = eval_tasks(cfg)
    if before_load is not None:
        before_load()
    with folder_lock(out, "finetune") if out is not None else contextlib.nullcontext():
        engine = make_backend(model, tokenizer, backend="hf", trust_remote_code=trust_remote_code,
                              dtype="float32", device=device)
        base, spec = engine.model, engine.spec
        if not hasattr(base, "get_output_embeddings") or base.get_output_embeddings() is None:
            raise RprimError("the model has no causal-LM head to fine-tune; pass a *ForCausalLM model")
        info = {**engine.describe(), "weights": weights_fingerprint(base)}
        if old is not None:
            check_same_model(old, info, out)
        evals = eval_set(tasks, engine.count_tokens_many)  # once: every step of every seed scores it
        seed_sets, bar = _prepare(base, spec, cfg, data, evals, progress)
        bar.write(log, _intro_line(cfg, seed_sets, evals, out))
        return _run_seeds(base, spec, cfg, seed_sets, evals, bar, info, runs, (old or {}).get("wall_time_s", 0.0),
                          log, out, save)

