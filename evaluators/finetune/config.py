"""The fine-tuning protocol's settings (:class:`FinetuneConfig`), checked before anything loads.

Apart from ``protocol`` so that the modules beside it (``results`` checks a run to resume
against these settings) need not import the protocol that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rprim.core import RprimError, parse_batch_size
from rprim.core.torch_util import OPTIMIZERS

from rprim.evaluators.data import task_names


BYTES_PER_EXAMPLE = 32 << 10  # a training example's record, tensors and padding, generously


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
        self._check_fits()
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

    def _check_fits(self) -> None:
        """Refuse, before any record is built, a training set the host memory cannot hold
        (each example costs its record, its token tensors and its share of the evaluation)."""
        import torch

        from .memory import free_memory

        need = self.examples * BYTES_PER_EXAMPLE
        free = free_memory(torch.device("cpu"))
        if need > free // 2:
            most = max(len(self.tasks), (free // 2 // BYTES_PER_EXAMPLE) // len(self.tasks) * len(self.tasks))
            raise RprimError(f"--examples {self.examples:,} needs about {need / 2**30:,.1f} GiB of host memory "
                             f"for the training set, and {free / 2**30:,.1f} GiB is available; use --examples "
                             f"{most:,} or fewer")

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
