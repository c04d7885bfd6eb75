"""Stage schedules (PROP-alpha or explicit fractions) and the learning-rate schedule.

Pure functions, no torch. A growth run of L layers with block size b has k = L/b stages; stage
i (1-indexed) trains a model of depth i*b for T_i steps, T_i = T * w_i / sum(w) with
w_i = i**alpha for PROP-alpha (Saunshi et al. 2024, sec. 3).

Integer rounding (ours): T_i are apportioned by the largest-remainder method: each stage gets
floor(T * w_i / W), and the steps still missing go, one each, to the stages with the largest
fractional parts (ties to the later, deeper stage). So sum(T_i) == T exactly and every T_i is
within one step of its real value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rprim.core import RprimError


def parse_schedule(spec: str, k: int) -> list[float]:
    """Stage weights for ``k`` stages from ``prop-ALPHA``, ``equal`` or ``f1,f2,...,fk``.

    Weights are normalised to sum to 1.
    """
    s = spec.strip().lower()
    if s == "equal":
        s = "prop-0"
    if s.startswith("prop-") or s.startswith("prop"):
        num = s[5:] if s.startswith("prop-") else s[4:]
        try:
            alpha = float(num)
        except ValueError:
            raise RprimError(f"bad schedule {spec!r}; write prop-ALPHA (e.g. prop-2) or k fractions "
                           "like 0.1,0.2,0.3,0.4") from None
        if not 0.0 <= alpha <= 3.0 or math.isnan(alpha):
            raise RprimError(f"schedule alpha {alpha} is outside [0, 3]; use --schedule prop-0 ... prop-3")
        weights = [i ** alpha for i in range(1, k + 1)]
    else:
        try:
            weights = [float(x) for x in s.split(",") if x.strip()]
        except ValueError:
            raise RprimError(f"bad schedule {spec!r}; write prop-ALPHA (e.g. prop-2) or k fractions "
                           "like 0.1,0.2,0.3,0.4") from None
        if len(weights) != k:
            raise RprimError(f"schedule {spec!r} has {len(weights)} stage fractions but the model has "
                           f"{k} blocks (n_layers / block_size); give {k} fractions")
        if any(not w > 0 or math.isinf(w) for w in weights):
            raise RprimError(f"schedule fractions {spec!r} must all be positive: every stage trains its depth "
                             "for at least one step (e.g. 0.1,0.2,0.3,0.4)")
    total = sum(weights)
    return [w / total for w in weights]


def apportion(total: int, fractions: list[float]) -> list[int]:
    """Integer parts of ``total * fractions`` that sum exactly to ``total`` (largest remainder)."""
    raw = [total * f for f in fractions]
    base = [math.floor(r + 1e-9) for r in raw]
    missing = total - sum(base)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - base[i]), -i))
    for i in order[:missing]:
        base[i] += 1
    return base


@dataclass(frozen=True)
class Stage:
    """Stage ``index`` (1-based) trains depth ``depth`` for steps [start, end)."""

    index: int
    depth: int
    start: int
    end: int

    @property
    def steps(self) -> int:
        return self.end - self.start


def make_stages(method: str, n_layers: int, block_size: int, schedule: str, total_steps: int) -> list[Stage]:
    """The stages of a run. Baseline is one stage at full depth; growth methods have L/b."""
    if method == "baseline":
        return [Stage(1, n_layers, 0, total_steps)]
    k = n_layers // block_size
    steps = apportion(total_steps, parse_schedule(schedule, k))
    if k > 1 and min(steps) < 1:
        fractions = parse_schedule(schedule, k)
        bound = math.ceil(1 / min(fractions))  # every stage surely gets a step with this many
        # the smallest count from which *every* count works (rounding makes some counts above
        # the first working one fail again: prop-2 with 4 stages works at 10, not at 11)
        fails = [t for t in range(k, min(bound, k + 100_000)) if min(apportion(t, fractions)) < 1]
        need = max(fails) + 1 if fails else k
        raise RprimError(f"{total_steps} steps leave a stage of the {schedule} schedule empty; "
                         f"use --steps {max(need, k)} or more")
    stages, start = [], 0
    for i, t in enumerate(steps, start=1):
        stages.append(Stage(i, i * block_size, start, start + t))
        start += t
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that trains optimizer step ``step`` (0-based); the last one past the end."""
    for s in stages:
        if s.start <= step < s.end:
            return s
    return stages[-1]


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int,
          growth_steps: tuple[int, ...] = (), rewarmup: int = 0) -> float:
    """Linear warmup then cosine decay from ``lr`` to ``min_lr`` over the whole run.

    One schedule spans all stages (growth does not restart it). With ``rewarmup`` > 0, the rate
    is additionally scaled by ``(step - g + 1) / rewarmup`` for ``rewarmup`` steps after each
    growth step g, so freshly copied layers do not meet the full rate at once (ours).
    """
    if warmup > 0 and step < warmup:
        rate = lr * (step + 1) / warmup
    else:
        span = max(1, total - warmup)
        progress = min(1.0, (step - warmup) / span)
        rate = min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    if rewarmup > 0:
        for g in growth_steps:
            if g <= step < g + rewarmup:
                rate *= (step - g + 1) / rewarmup
    return rate
