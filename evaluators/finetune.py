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
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import rprim.primitives as P
from rprim.core import (RprimError, atomic_folder, check_output_folder, folder_lock,
                        parse_batch_size, write_json)
from rprim.core.files import read_marker
from rprim.core.torch_util import OPTIMIZERS, make_optimizer

from .evaluate import ANSWER_MARGIN, evaluate, make_backend, task_names, task_records

Log = Callable[[str], None]


@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of the protocol; defaults are the paper's."""

    tasks: tuple[str, ...] = ("varassign-code-d1", "varassign-code-d2")
    examples: int = 64            # training examples per seed, split evenly across tasks
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 300
    eval_start: int | None = None  # evaluation window, inclusive; None = the last third of steps
    eval_end: int | None = None    # None = steps
    eval_every: int = 1           # evaluate every k-th step of the window (10 is a fast option)
    eval_n: int = 1000            # held-out test examples per task
    lr: float = 1e-3
    optimizer: str = "adafactor"
    shots: int = 0
    batch_size: int | str = "auto"  # evaluation batch size
    micro_batch_size: int | str = "auto"  # training rows per forward pass (the step stays full-batch)

    @property
    def window(self) -> tuple[int, int]:
        """(first, last) step of the evaluation window, defaults resolved."""
        start = self.steps - self.steps // 3 if self.eval_start is None else self.eval_start
        return start, self.steps if self.eval_end is None else self.eval_end

    @property
    def eval_steps(self) -> list[int]:
        start, end = self.window
        return list(range(start, end + 1, self.eval_every))

    def check(self) -> None:
        """One-line RprimError for any bad knob (types included), before anything is loaded."""
        ints = {"examples": self.examples, "steps": self.steps, "eval_every": self.eval_every,
                "eval_n": self.eval_n, "shots": self.shots, "eval_start": self.eval_start,
                "eval_end": self.eval_end}
        for name, v in ints.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise RprimError(f"--{name.replace('_', '-')} takes an integer (got {v!r})")
        if not self.tasks:
            raise RprimError("the task list is empty; pass --tasks varassign-code-d1,varassign-code-d2")
        if self.examples <= 0 or self.examples % len(self.tasks):
            raise RprimError(f"--examples {self.examples} does not split evenly across "
                             f"{len(self.tasks)} tasks; use a positive multiple of {len(self.tasks)}")
        if not self.seeds:
            raise RprimError("--seeds must be at least 1")
        if len(set(self.seeds)) != len(self.seeds) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise RprimError(f"seeds must be distinct integers >= 0 (got {list(self.seeds)})")
        if self.steps <= 0:
            raise RprimError(f"--steps must be positive (got {self.steps})")
        self._check_window()
        if self.eval_n <= 0:
            raise RprimError(f"--eval-n must be a positive number of examples (got {self.eval_n})")
        if self.shots < 0:
            raise RprimError(f"--shots must be >= 0 (got {self.shots})")
        if self.optimizer not in OPTIMIZERS:
            raise RprimError(f"unknown optimizer {self.optimizer!r}; use {' or '.join(OPTIMIZERS)}")
        lr_ok = isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
        if not lr_ok or not 0 < self.lr < float("inf"):
            raise RprimError(f"--lr must be a positive number (got {self.lr!r})")
        parse_batch_size(self.batch_size, "--batch-size")
        parse_batch_size(self.micro_batch_size, "--micro-batch-size")

    def _check_window(self) -> None:
        if self.eval_every <= 0:
            raise RprimError(f"--eval-every must be positive (got {self.eval_every})")
        start, end = self.window
        if not 0 <= start <= end <= self.steps:
            default = (" (--eval-start defaults to the last third of --steps, "
                       f"{self.steps - self.steps // 3})" if self.eval_start is None else "")
            raise RprimError(f"the evaluation window {start}..{end} must lie within 0..{self.steps}"
                             f"{default}; adjust --eval-start/--eval-end")

    def resolved(self) -> "FinetuneConfig":
        """Checked, with canonical task names, the window's defaults and the batch sizes filled in."""
        self.check()
        start, end = self.window
        return replace(self, tasks=tuple(task_names(list(self.tasks))), eval_start=start,
                       eval_end=end, seeds=tuple(self.seeds), lr=float(self.lr),
                       batch_size=parse_batch_size(self.batch_size, "--batch-size"),
                       micro_batch_size=parse_batch_size(self.micro_batch_size, "--micro-batch-size"))


@dataclass
class SeedRun:
    seed: int
    train_ids: list[str]
    curve: list[dict[str, Any]] = field(default_factory=list)  # step, loss, accuracy per task
    before: dict[str, float] = field(default_factory=dict)      # accuracy before fine-tuning
    window: dict[str, float] = field(default_factory=dict)      # mean accuracy over the window
    train_time_s: float = 0.0
    eval_time_s: float = 0.0


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


def eval_records(cfg: FinetuneConfig) -> dict[str, list[dict[str, Any]]]:
    """The held-out examples every evaluation scores (as ``evaluate`` draws them)."""
    out = {}
    for name in cfg.tasks:
        try:
            out[name] = task_records(name, cfg.shots, cfg.eval_n, 0)[1]
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


# ---------------------------------------------------------------------------------------------
# guards: the model's context, memory


def model_context(model: Any, tok: Any) -> int:
    """The longest sequence the model accepts, as the evaluator reads it."""
    from .hf import context_length

    return context_length(model, tok)


def check_context(tok: Any, context: int, evals: dict[str, list[dict[str, Any]]],
                  train_width: int) -> int:
    """RprimError unless the training rows and every evaluation prompt plus its answer budget
    fit the model's context (the evaluator refuses the same prompts, but only at the first
    evaluation step, after most of the training). Returns the evaluation's token count."""
    if train_width > context:
        raise RprimError(f"a training example needs {train_width} tokens but the model's context is "
                         f"{context}; use fewer --shots or a model with a longer context")
    total = 0
    for name, recs in evals.items():
        lengths = [len(ids) for ids in tok([r["prompt"] for r in recs])["input_ids"]]
        budget = max(len(tok(r["target_delimiter"] + r["target"], add_special_tokens=False)["input_ids"])
                     for r in recs) + ANSWER_MARGIN
        if max(lengths) + budget > context:
            raise RprimError(f"a {name} prompt needs {max(lengths)} tokens plus {budget} for the answer, "
                             f"but the model's context is {context}; use fewer --shots or a model "
                             "with a longer context")
        total += sum(lengths) + len(recs) * (budget - ANSWER_MARGIN)
    return total


def free_memory(device: Any) -> int:
    """Bytes this process can still allocate on ``device`` (GPU: free memory; CPU: available
    RAM, capped by a container's memory limit)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    if not free:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            free.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    return max(0, min(free)) if free else 8 << 30


def memory_per_token(config: Any, seq_len: int, width: int = 4) -> int:
    """Bytes of activations kept for the backward pass per training token (an upper estimate:
    per layer the attention and MLP inputs and outputs plus the attention weights, and the
    fp32 logits, their log-softmax and gradient; measured 2.2-2.5 MB per token for SmolLM2-135M
    in fp32, estimated 2.5 MB)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 1024)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 24)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 16)
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    vocab = getattr(cfg, "vocab_size", 50000)
    per_layer = 8 * hidden + 5 * inter + 2 * heads * seq_len
    return int(width * layers * per_layer + 16 * vocab)


def micro_batch_size(setting: int | str, rows: int, width: int, per_token: int, state: int,
                     free: int) -> int:
    """Training rows per forward pass: ``setting`` if a number, else as many as fit in 60% of
    the free memory after the trained copy's weights, gradients and optimizer state
    (``state`` bytes). RprimError when not even one row fits."""
    if setting != "auto":
        return min(int(setting), rows)
    budget = 0.6 * free - state
    row = width * per_token * 1.25
    if budget < row:
        gb = 1 << 30
        raise RprimError(f"fine-tuning needs about {(state + row) / gb:.1f} GB for one training row "
                         f"(weights, gradients, optimizer state, activations of {width} tokens) but "
                         f"only {free / gb:.1f} GB are free; use fewer --shots, a smaller model or a "
                         "machine with more memory")
    return max(1, min(rows, int(budget // row)))


def _state_bytes(model: Any, optimizer: str) -> int:
    """The trained copy (fp32), its gradients and the optimizer's state."""
    n = sum(p.numel() for p in model.parameters())
    return int(n * 4 * (2 + (2 if optimizer == "adamw" else 0.1)))


# ---------------------------------------------------------------------------------------------
# training


def micro_batches(ids: Any, mask: Any, labels: Any, size: int) -> list[tuple[Any, Any, Any, int]]:
    """(ids, mask, labels, answer tokens) per micro-batch, each cut to its own longest row.

    Rows are right-padded, so dropping padding columns changes no position or result.
    """
    out = []
    for i in range(0, ids.shape[0], size):
        m = mask[i:i + size]
        w = int(m.sum(1).max())
        lab = labels[i:i + size, :w].contiguous()
        out.append((ids[i:i + size, :w].contiguous(), m[:, :w].contiguous(), lab,
                    int((lab[:, 1:] != -100).sum())))
    return out


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


def _score(model: Any, tok: Any, cfg: FinetuneConfig, autocast: Any = contextlib.nullcontext,
           tick: Callable[[int], None] | None = None) -> dict[str, float]:
    was_training = model.training
    with autocast():
        res = evaluate(make_backend(model, tok, backend="hf", batch_size=cfg.batch_size),
                       tasks=list(cfg.tasks), shots=cfg.shots, n=cfg.eval_n, on_progress=tick)
    model.train(was_training)
    return {name: res.accuracy(name) for name in res.tasks}


@dataclass
class SeedPlan:
    """What one seed trains on, prepared before any seed runs."""

    seed: int
    records: list[dict[str, Any]]
    encoded: tuple[Any, Any, Any]  # ids, mask, labels (CPU)
    micro: int = 1


def finetune_seed(base: Any, tok: Any, cfg: FinetuneConfig, plan: SeedPlan, log: Log = lambda s: None,
                  save: Path | None = None, progress: "Progress | None" = None) -> SeedRun:
    """One run: a fresh fp32 copy of ``base`` fine-tuned on the seed's own records."""
    import torch

    device = next(base.parameters()).device
    run = SeedRun(plan.seed, [r["id"] for r in plan.records])
    batches = micro_batches(*(t.to(device) for t in plan.encoded), plan.micro)
    autocast = _autocast(device)
    p = progress or Progress(False)
    wanted = set(cfg.eval_steps)

    def score(model: Any) -> dict[str, float]:
        t0 = time.perf_counter()
        accuracy = _score(model, tok, cfg, autocast, p.eval_tick)
        run.eval_time_s += time.perf_counter() - t0
        return accuracy

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(plan.seed)  # dropout, if the model has any
        model = copy.deepcopy(base).float()
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
        p.at(plan.seed, 0)
        if 0 in wanted:  # step 0 is in the window: the model before any update
            run.before = score(model)
        model.train()
        for step in range(1, cfg.steps + 1):
            p.at(plan.seed, step)
            t0 = time.perf_counter()
            point: dict[str, Any] = {"step": step, "loss": round(
                _guarded_step(model, batches, opt, autocast, p.train_tick), 6)}
            run.train_time_s += time.perf_counter() - t0
            if step in wanted:
                point["accuracy"] = score(model)
                p.note(point)
                log(f"seed {plan.seed} step {step}: loss {point['loss']:.4f} "
                    + " ".join(f"{k} {v:.3f}" for k, v in point["accuracy"].items()))
            run.curve.append(point)
    evals = ([run.before] if 0 in wanted else []) + [q["accuracy"] for q in run.curve if "accuracy" in q]
    run.window = {name: statistics.fmean(e[name] for e in evals) for name in cfg.tasks}
    if save is not None:
        with atomic_folder(save, kind=SAVE_KIND) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
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
# progress


class Progress:
    """One progress display for the whole run (every seed's steps and evaluations), with an ETA.

    Work is counted in tokens: a training token costs a forward and a backward pass (3 units),
    an evaluated token one forward pass (1 unit). The seconds per unit are then *measured*
    separately for training and evaluation, so the estimate corrects itself as soon as both
    have run once (evaluation, with its decoding, rarely costs exactly a third). On a terminal
    it is a tqdm bar; in a log file, a plain line every 30 seconds.
    """

    def __init__(self, enabled: bool, train_units: float = 0.0, eval_units: float = 0.0,
                 eval_examples: int = 1, seeds: int = 1, steps: int = 1) -> None:
        self.todo = {"train": train_units, "eval": eval_units}
        self.done = {"train": 0.0, "eval": 0.0}
        self.spent = {"train": 0.0, "eval": 0.0}
        self.per_example = eval_units / max(1, eval_examples)
        self.seeds, self.steps, self.count, self.seed, self.step = seeds, steps, 0, None, 0
        self.extra = ""
        self.enabled = enabled
        self.start = self._mark = self._shown = time.perf_counter()
        self.bar = None
        self.interval = 30.0
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.interval = 0.5
            self.bar = tqdm(total=1000, file=sys.stderr, dynamic_ncols=True, leave=True,
                            desc="rprim finetune", mininterval=self.interval,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}{postfix}")

    def at(self, seed: int, step: int) -> None:
        if seed != self.seed:
            self.count += 1
            self.seed = seed
        self.step = step

    def note(self, point: dict[str, Any]) -> None:
        acc = point.get("accuracy", {})
        self.extra = f"loss {point['loss']:.3f}, accuracy" + "".join(f" {v:.3f}" for v in acc.values())

    def train_tick(self, tokens: int) -> None:
        self._add("train", 3.0 * tokens)

    def eval_tick(self, examples: int) -> None:
        self._add("eval", examples * self.per_example)

    def _add(self, kind: str, units: float) -> None:
        now = time.perf_counter()
        self.done[kind] += units
        self.spent[kind] += now - self._mark
        self._mark = now
        if self.enabled and now - self._shown >= self.interval:
            self._show(now)

    def eta(self) -> float | None:
        """Seconds left: what is left of each kind of work times its measured rate."""
        rates = {k: self.spent[k] / self.done[k] for k in self.done if self.done[k] > 0}
        if not rates:
            return None
        prior = min(rates.values())
        return sum(max(0.0, self.todo[k] - self.done[k]) * rates.get(k, prior) for k in self.todo)

    def _show(self, now: float) -> None:
        from tqdm import tqdm

        self._shown = now
        eta = self.eta()
        spent = sum(self.spent.values())
        permille = int(1000 * spent / (spent + eta)) if eta is not None and spent + eta > 0 else 0
        status = (f"seed {self.seed} ({self.count}/{self.seeds}) step {self.step}/{self.steps}"
                  + (f" · ~{tqdm.format_interval(eta)} left" if eta is not None else "")
                  + (f" · {self.extra}" if self.extra else ""))
        if self.bar is None:
            print(f"rprim finetune {permille / 10:.0f}% · {tqdm.format_interval(now - self.start)} "
                  f"elapsed · {status}", file=sys.stderr, flush=True)
            return
        self.bar.n = permille
        self.bar.set_postfix_str(status, refresh=False)
        self.bar.refresh()

    def write(self, log: Log, message: str) -> None:
        """Print ``message`` through ``log`` without breaking the bar."""
        if self.bar is None:
            log(message)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            log(message)

    def close(self, finished: bool) -> None:
        if finished and self.enabled:
            from tqdm import tqdm

            done = f"{self.seeds} seed(s) done"
            if self.bar is None:
                print(f"rprim finetune 100% · {tqdm.format_interval(time.perf_counter() - self.start)} "
                      f"· {done}", file=sys.stderr, flush=True)
            else:
                self.bar.n = 1000
                self.bar.set_postfix_str(done, refresh=False)
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# results, resume

RESULTS_KIND = "finetune"
SAVE_KIND = "finetune-model"
# settings that may differ between a run and its resume: which seeds, and batch sizes (these
# change only how the work is split, not what is computed)
EXECUTION = ("seeds", "batch_size", "micro_batch_size")


def aggregate(runs: Sequence[SeedRun], tasks: Sequence[str]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per task and over the tasks' mean."""
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    per_run_mean = [statistics.fmean(r.window[t] for t in tasks) for r in runs]
    return {"overall": stats(per_run_mean),
            "per_task": {t: stats([r.window[t] for r in runs]) for t in tasks}}


def weights_fingerprint(model: Any) -> str:
    """16 hex digits over every parameter's name, shape and 256 evenly spaced values (as
    float32): any training changes it; the device and dtype it is loaded in do not."""
    import torch

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        idx = torch.linspace(0, flat.numel() - 1, min(flat.numel(), 256), dtype=torch.float64).long()
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat[idx.to(flat.device)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def results_of(cfg: FinetuneConfig, model: dict[str, Any], runs: dict[int, SeedRun],
               wall: float, micro: int | None) -> dict[str, Any]:
    """The results dict over the finished seeds (in the order of ``cfg.seeds``)."""
    from rprim import __version__

    done = [runs[s] for s in cfg.seeds if s in runs]
    return {"config": asdict(cfg), "model": model, "rprim_version": __version__,
            "generator_version": P.GENERATOR_VERSION,
            "complete": len(done) == len(cfg.seeds), "seeds_done": [r.seed for r in done],
            "micro_batch_size": micro, "wall_time_s": round(wall, 3),
            "train_time_s": round(sum(r.train_time_s for r in done), 3),
            "eval_time_s": round(sum(r.eval_time_s for r in done), 3),
            "aggregate": aggregate(done, cfg.tasks) if done else None,
            "runs": [asdict(r) for r in done]}


def check_results_folder(out: str | Path) -> Path:
    """The checks made before any fine-tuning: ``out`` can hold the results."""
    return check_output_folder(out, RESULTS_KIND, legacy=("results.json",))


def check_save_folder(save: str | Path, out: str | Path | None = None) -> Path:
    """The checks made before any fine-tuning: ``save`` can hold one model folder per seed."""
    path = Path(save).expanduser()
    if out is not None and path.absolute() == Path(out).expanduser().absolute():
        raise RprimError(f"--save and --out are the same folder ({save}); give the models their own "
                         f"folder, e.g. --save {path.name}-models")
    ours = tuple(p.name for p in path.glob("seed-*")
                 if p.is_dir() and (read_marker(p) or {}).get("kind") == SAVE_KIND) if path.is_dir() else ()
    return check_output_folder(path, "fine-tuned models", flag="--save", legacy=ours)


def save_results(results: dict[str, Any], out: str | Path) -> Path:
    """``out/results.json``, written atomically (other files in ``out`` are kept)."""
    with atomic_folder(check_results_folder(out), kind=RESULTS_KIND) as tmp:
        write_json(tmp / "results.json", results)
    return Path(out) / "results.json"


def _read_results(out: str | Path) -> dict[str, Any] | None:
    path = Path(out).expanduser() / "results.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(old, dict) or not isinstance(old.get("config"), dict) \
                or not isinstance(old.get("runs"), list):
            raise ValueError
    except (OSError, ValueError):
        raise RprimError(f"{path} is not an rprim finetune results file; pass a new --out") from None
    return old


def _check_same_settings(old: dict[str, Any], cfg: FinetuneConfig, out: str | Path) -> None:
    now = json.loads(json.dumps(asdict(cfg)))
    for key, value in now.items():
        if key not in EXECUTION and old["config"].get(key) != value:
            raise RprimError(f"cannot resume the run in {out}: --{key.replace('_', '-')} was "
                             f"{old['config'].get(key)!r} there and is {value!r} now; pass the same "
                             "settings, or a new --out to start over")
    if old.get("generator_version") != P.GENERATOR_VERSION:
        raise RprimError(f"cannot resume the run in {out}: its data came from task generator version "
                         f"{old.get('generator_version')}, this rprim has {P.GENERATOR_VERSION}; "
                         "pass a new --out to start over")


def previous_run(out: str | Path | None, cfg: FinetuneConfig, resume: bool) -> dict[str, Any] | None:
    """The saved run in ``out`` to continue (``resume``), checked against ``cfg``; None to start.

    An interrupted run is never silently replaced: without ``resume`` it is an error.
    """
    if out is None:
        if resume:
            raise RprimError("--resume needs --out DIR, the folder of the run to continue")
        return None
    old = _read_results(out)
    if not resume:
        if old is not None and not old.get("complete", True):
            raise RprimError(f"{out} holds an interrupted run ({len(old['runs'])} of "
                             f"{len(old['config']['seeds'])} seeds done); pass "
                             "--resume to continue it, or a new --out to start over")
        return None
    if old is None:
        raise RprimError(f"nothing to resume in {out} (no results.json); drop --resume to start a run")
    _check_same_settings(old, cfg, out)
    extra = sorted(set(r["seed"] for r in old["runs"]) - set(cfg.seeds))
    if extra:
        raise RprimError(f"the run in {out} has finished seeds {extra} that this run leaves out; "
                         f"pass --seeds {max(extra) + 1} or more")
    return old


def _check_same_model(old: dict[str, Any], model: dict[str, Any], out: str | Path) -> None:
    was = (old.get("model") or {}).get("weights")
    if was != model["weights"]:
        raise RprimError(f"cannot resume the run in {out}: its seeds were fine-tuned from another model "
                         f"(weights {was}, this one {model['weights']}); pass the same --model, or a "
                         "new --out to start over")


def _runs_of(old: dict[str, Any] | None) -> dict[int, SeedRun]:
    names = set(SeedRun.__dataclass_fields__)
    return {r["seed"]: SeedRun(**{k: v for k, v in r.items() if k in names})
            for r in (old or {}).get("runs", [])}


# ---------------------------------------------------------------------------------------------
# the protocol


def _prepare(base: Any, tok: Any, cfg: FinetuneConfig, data: dict[int, list[dict[str, Any]]],
             evals: dict[str, list[dict[str, Any]]], progress: bool) -> tuple[list[SeedPlan], Progress]:
    """Encode every seed's data, refuse what cannot fit (context, memory), size the
    micro-batches and the progress bar's work."""
    encoded = {s: encode(tok, recs) for s, recs in data.items()}
    width = max(e[0].shape[1] for e in encoded.values())
    eval_tokens = check_context(tok, model_context(base, tok), evals, width)
    device = next(base.parameters()).device
    micro = micro_batch_size(cfg.micro_batch_size, cfg.examples, width,
                             memory_per_token(base.config, width), _state_bytes(base, cfg.optimizer),
                             free_memory(device))
    plans = [SeedPlan(s, data[s], encoded[s], micro) for s in data]
    train_units = cfg.steps * sum(3.0 * int(e[1].sum()) for e in encoded.values())
    eval_units = float(len(cfg.eval_steps) * len(plans) * eval_tokens)
    bar = Progress(progress, train_units, eval_units, sum(len(v) for v in evals.values()),
                   seeds=len(plans), steps=cfg.steps)
    return plans, bar


def _plan_line(cfg: FinetuneConfig, plans: list[SeedPlan], evals: dict[str, list[Any]],
               out: str | Path | None) -> str:
    """What is about to run, said before the first (possibly long) step."""
    return (f"fine-tuning {len(plans)} seed(s) x {cfg.steps} steps on {cfg.examples} examples "
            f"(micro-batches of {plans[0].micro}), evaluating {sum(len(v) for v in evals.values())} "
            f"examples at {len(cfg.eval_steps)} steps per seed; "
            + (f"finished seeds go to {out}" if out is not None else
               "no --out: results are only returned (pass --out DIR to keep finished seeds)"))


def _run_seeds(base: Any, tok: Any, cfg: FinetuneConfig, plans: list[SeedPlan], bar: Progress,
               model: dict[str, Any], runs: dict[int, SeedRun], old_wall: float, log: Log,
               out: str | Path | None, save: str | Path | None) -> dict[str, Any]:
    """Fine-tune the missing seeds; each finished seed is written to ``out`` at once."""
    start = time.perf_counter()
    results: dict[str, Any] | None = None
    try:
        for plan in plans:
            target = Path(save).expanduser() / f"seed-{plan.seed}" if save else None
            runs[plan.seed] = finetune_seed(base, tok, cfg, plan, lambda m: bar.write(log, m), target, bar)
            results = results_of(cfg, model, runs, old_wall + time.perf_counter() - start,
                                 plans[0].micro)
            if out is not None:
                save_results(results, out)
            bar.write(log, f"seed {plan.seed}: " + " ".join(
                f"{k} {v:.3f}" for k, v in runs[plan.seed].window.items()))
    finally:
        bar.close(finished=results is not None and results["complete"])
    assert results is not None
    return results


def finetune(model: Any, cfg: FinetuneConfig = FinetuneConfig(), tokenizer: Any = None,
             log: Log = lambda s: None, save: str | Path | None = None,
             trust_remote_code: bool = False, *, out: str | Path | None = None,
             resume: bool = False, progress: bool = False, device: str = "auto",
             before_load: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the protocol for every seed; returns the results dict (see ``results_of``).

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
    runs = _runs_of(old)
    todo = [s for s in cfg.seeds if s not in runs]
    if old is not None and not todo:
        log(f"the run in {out} is complete ({len(runs)} seeds); nothing to do")
        return old
    data = {s: [_slim(r) for r in training_set(cfg, s)] for s in todo}
    evals = eval_records(cfg)
    if before_load is not None:
        before_load()
    with folder_lock(out, "finetune") if out is not None else contextlib.nullcontext():
        engine = make_backend(model, tokenizer, backend="hf", trust_remote_code=trust_remote_code,
                              dtype="float32", device=device)
        base, tok = engine.model, engine.tok
        if not hasattr(base, "get_output_embeddings") or base.get_output_embeddings() is None:
            raise RprimError("the model has no causal-LM head to fine-tune; pass a *ForCausalLM model")
        info = {**engine.describe(), "weights": weights_fingerprint(base)}
        if old is not None:
            _check_same_model(old, info, out)
        plans, bar = _prepare(base, tok, cfg, data, evals, progress)
        bar.write(log, _plan_line(cfg, plans, evals, out))
        return _run_seeds(base, tok, cfg, plans, bar, info, runs, (old or {}).get("wall_time_s", 0.0),
                          log, out, save)


def table(results: dict[str, Any]) -> str:
    """Mean ± std over seeds, per task and overall."""
    agg = results["aggregate"]
    seeds = len(results["runs"])
    lines = [f"{'task':<22} {'accuracy (mean ± std over ' + str(seeds) + ' seeds)'}"]
    for name, s in agg["per_task"].items():
        lines.append(f"{name:<22} {s['mean']:.3f} ± {s['std']:.3f}")
    lines.append(f"{'overall':<22} {agg['overall']['mean']:.3f} ± {agg['overall']['std']:.3f}")
    if not results.get("complete", True):
        lines.append(f"(interrupted: {seeds} of {len(results['config']['seeds'])} seeds; "
                     "continue with --resume)")
    return "\n".join(lines)
