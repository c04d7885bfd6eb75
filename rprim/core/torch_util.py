"""What needs torch, imported lazily: dtypes, devices, and the one optimizer factory.

The evaluator, the fine-tuning protocol and the trainer all call these, so ``--dtype bf16``,
``--device cuda`` and ``adafactor`` mean the same thing everywhere.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from .errors import RprimError
from .options import flag_value, parse_device, parse_dtype

OPTIMIZERS = ("adamw", "adafactor")


def torch_dtype(name: str, device: str) -> Any:
    """The torch dtype for a dtype spelling; ``auto`` is bf16 on a GPU that has it, else fp32."""
    import torch

    name = parse_dtype(name)
    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def auto_device() -> str:
    """What ``--device auto`` means here (see :func:`resolve_device`)."""
    return resolve_device("auto")


def resolve_device(spec: str, flag: str = "--device") -> str:
    """``auto`` -> ``$RPRIM_DEVICE`` when set (``RPRIM_DEVICE=cpu`` keeps every rprim command on
    the CPU of a GPU machine), else ``cuda`` when a GPU is visible, else ``cpu``. An explicit
    device must exist here (a one-line error names what is visible instead)."""
    import torch

    spec = parse_device(spec, flag)
    if spec == "auto":
        env = os.environ.get("RPRIM_DEVICE", "").strip()
        if not env or env.lower() == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        spec, flag = parse_device(env, "RPRIM_DEVICE"), "RPRIM_DEVICE="
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise RprimError(f"{flag_value(flag, spec)}: {why} on this machine; use {flag_value(flag, 'cpu')} or auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise RprimError(f"{flag_value(flag, spec)}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1}); "
                             "pick one of those")
    if spec == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RprimError(f"{flag_value(flag, 'mps')}: no Apple GPU here; use {flag_value(flag, 'cpu')} or auto")
    return spec


def make_optimizer(name: str, params: Iterable[Any], lr: float, *, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                   fused: bool = False) -> Any:
    """AdamW or Adafactor (torch's own, ``torch.optim.Adafactor``), the same algorithms for
    fine-tuning and for pretraining. torch's Adafactor has no momentum and scales each step
    by the parameter's RMS (at least 1e-3), like the Flax/optax Adafactor of the paper's stack;
    ``lr`` is its constant base rate (schedules set it per step).

    ``params`` may be parameter groups (dicts with their own ``weight_decay``). ``fused``
    selects AdamW's fused CUDA kernel (one launch for all parameters).
    """
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                 fused=fused or None)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay)
    raise RprimError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
