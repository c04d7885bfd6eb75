"""The fine-tuning protocol's progress display: one bar for every seed's steps and evaluations.

A default run is hundreds of training steps and evaluations per seed, so it shows how far it
is and how long is left: a tqdm bar on a terminal, a plain line every 30 seconds in a log file.
The time left comes from :class:`rprim.core.progress.Rates`, measured separately for training
and evaluation. tqdm is imported only when something is shown.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from rprim.core.progress import Rates

Log = Callable[[str], None]


class FinetuneBar:
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
        self.rates = Rates()  # units done and seconds spent, per kind of work
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
        self.rates.add(kind, now - self._mark, units)  # the time since the last tick of any kind
        self._mark = now
        if self.enabled and now - self._shown >= self.interval:
            self._show(now)

    def eta(self) -> float | None:
        """Seconds left: what is left of each kind of work times its measured rate."""
        fastest = self.rates.fastest()  # a kind not measured yet: assumed as fast as the other
        if fastest is None:
            return None
        done = self.rates.units
        return self.rates.left(((k, max(0.0, self.todo[k] - done.get(k, 0.0))) for k in self.todo),
                               unknown=fastest)

    def _show(self, now: float) -> None:
        from tqdm import tqdm

        self._shown = now
        eta = self.eta()
        spent = sum(self.rates.seconds.values())
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
