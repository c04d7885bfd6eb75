"""Timing and loss bookkeeping without a host sync per step.

The loss of each step stays a device tensor; it is read (one sync) only at log steps, for
checkpoints and snapshots. Training time is the wall time of training steps only: the clock
pauses (after waiting for the device) around evaluation, checkpoints, snapshots and growth, so
tokens/s is measured between log steps over steps alone. The steady-state throughput of a run
is the median over its log intervals at full depth, leaving out the first interval of each
depth and of each resumed segment (compilation and warm-up land there).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10G": 70e12}


def peak_flops(cfg, device: str, world: int) -> float | None:
    """Dense bf16 peak FLOP/s of all ranks (``peak_flops`` setting, else known GPUs)."""
    if cfg.peak_flops:
        return cfg.peak_flops * world
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in name:
            return PEAK_BF16[key] * world
    return None


class Meter:
    """A pausable training clock and the last step's loss, read only when needed."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.running_since: float | None = None
        self.interval_time = 0.0
        self.interval_tokens = 0
        self.last_loss = None  # device tensor of the last step's mean loss (this rank)

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def resume(self) -> None:
        if self.running_since is None:
            self.running_since = time.perf_counter()

    def pause(self) -> float:
        """Stop the clock (waiting for queued device work); return the seconds just added."""
        if self.running_since is None:
            return 0.0
        self._sync()
        dt = time.perf_counter() - self.running_since
        self.running_since = None
        self.interval_time += dt
        return dt

    def add_step(self, tokens: int, loss) -> None:
        self.interval_tokens += tokens
        self.last_loss = loss

    def close_interval(self) -> float | None:
        """Tokens/s since the last call (clock paused first)."""
        self.pause()
        tps = self.interval_tokens / self.interval_time if self.interval_time > 0 else None
        self.interval_time, self.interval_tokens = 0.0, 0
        return tps


def steady_state(rows: list[dict[str, Any]], n_layers: int, per_token: float, peak: float | None,
                 starts: list[int]) -> dict[str, Any]:
    """Median tokens/s (and MFU) over log intervals at full depth, leaving out the first
    interval at each depth and the first after each (re)start (``starts``: the steps at which
    the run's segments began)."""
    seen: set[int] = set()
    keep, prev = [], 0
    for r in sorted(rows, key=lambda r: r["step"]):
        tps, depth = r.get("tokens_per_s"), r.get("depth")
        first = depth not in seen or any(prev <= s < r["step"] for s in starts)
        prev = r["step"]
        seen.add(depth)
        if tps and depth == n_layers and not first:
            keep.append(tps)
    tps = statistics.median(keep) if keep else None
    return {"steady_tokens_per_s": tps, "steady_intervals": len(keep),
            "steady_mfu": (tps * per_token / peak) if (tps and peak) else None}
