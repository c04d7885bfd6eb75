"""Data parallelism, applied from the outside in one place.

``torchrun --nproc-per-node N -m rprim train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; then the
process group is initialised (nccl on GPU, gloo on CPU) and :func:`wrap` parallelises the plain
model in one of two ways:

- ``ddp``: the model is replicated and put in ``DistributedDataParallel``. Growth and checkpoints
  work on the plain model; after a growth the trainer wraps the grown model again.
- ``fsdp``: FSDP2 (``fully_shard``) shards every decoder layer and then the root, in place, so
  each rank holds 1/N of the weights, gradients and optimizer state. Checkpoints and growth go
  through *full* (unsharded) state dicts gathered to rank 0 (:func:`full_state`); growth then
  builds the deeper model on the meta device, shards it, and loads the grown state with a
  broadcast from rank 0 (:func:`load_full_state`).

Single-process runs use neither: the model stays plain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init(device_pref: str = "auto") -> Dist:
    """Read the torchrun environment, pick the device, and start the process group if needed."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref.startswith("cuda")
    device = f"cuda:{local}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo",
                                             rank=rank, world_size=world)
    return Dist(rank, world, local, device)


def sharded(dist: Dist, mode: str) -> bool:
    """Whether this run shards the model with FSDP2 (several ranks and ``parallel=fsdp``)."""
    return dist.enabled and mode == "fsdp"


def wrap(model, dist: Dist, mode: str = "ddp"):
    """The module the training step calls: DDP around ``model``, or ``model`` itself sharded in
    place with FSDP2, when running on several ranks; ``model`` unchanged otherwise.

    Build the optimizer *after* this call: FSDP2 replaces the parameters with sharded ones.
    A model that is already sharded (FSDP growth shards the deeper model itself) is returned as
    it is.
    """
    if not dist.enabled:
        return model
    if mode == "fsdp":
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if isinstance(model, FSDPModule):
            return model
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist.local_rank] if dist.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def full_state(model, optimizer) -> tuple[dict, dict]:
    """(model state, optimizer state) of a sharded model as full CPU tensors on rank 0 (empty
    dicts elsewhere). Collective: every rank must call it. The optimizer state is keyed by
    parameter name (``{"state": {name: ...}, "param_groups": [{..., "params": [names]}]}``)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (get_model_state_dict(model, options=opts),
            get_optimizer_state_dict(model, optimizer, options=opts))


def load_full_state(model, optimizer, model_state: dict, optim_state: dict | None) -> None:
    """Load full states held by rank 0 into a sharded model (and optimizer), broadcasting them.
    Collective. Parameters absent from ``optim_state["state"]`` start with fresh state."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, model_state, options=opts)
    if optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=opts)


def named_param_groups(model, optimizer, like: list[dict] | None = None) -> list[dict]:
    """The optimizer's param groups with parameter names instead of tensors; hyper-parameters
    from ``like`` (a saved state's groups) where given."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for i, g in enumerate(optimizer.param_groups):
        base = {k: v for k, v in (like[i] if like else g).items() if k != "params"}
        out.append({**base, "params": [names[id(p)] for p in g["params"]]})
    return out


def gradient_sync(model, ddp, dist: Dist, mode: str, last_micro_step: bool):
    """Context for one micro-step: gradients are reduced across ranks only on the last one."""
    import contextlib

    if ddp is not None and not last_micro_step:
        return ddp.no_sync()
    if sharded(dist, mode):
        model.set_requires_gradient_sync(last_micro_step)
    return contextlib.nullcontext()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch

        torch.distributed.barrier()


def mean(value: float, dist: Dist) -> float:
    """Average a Python float over ranks (float64, on CPU for gloo or on the device for nccl)."""
    if not dist.enabled:
        return value
    import torch

    t = torch.tensor([value], dtype=torch.float64, device=dist.device)
    torch.distributed.all_reduce(t)
    return float(t.item()) / dist.world


def shutdown(dist: Dist) -> None:
    if dist.enabled:
        import torch

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
