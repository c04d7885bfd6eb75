"""Data parallelism, applied from the outside in one place: the training loop has no branch on it.

``torchrun --nproc-per-node N -m rprim train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; then the
process group is initialised (nccl on GPU, gloo on CPU) and a :class:`Parallel` strategy owns
everything that differs between the two ways of running on several ranks:

- :class:`Replicated` (one process, or ``ddp``): the model is replicated and its loss module is
  put in ``DistributedDataParallel``. Growth and checkpoints work on the plain model; after a
  growth the loss module is wrapped again.
- :class:`Sharded` (``fsdp``): FSDP2 (``fully_shard``) shards every decoder layer and then the
  root, in place, so each rank holds 1/N of the weights, gradients and optimizer state. The
  root is the loss module (:class:`rprim.model_zoo.model.LossModel`), whose forward the training
  step calls, so FSDP's root hooks gather the embeddings, final norm and head. Checkpoints and
  growth go through *full* (unsharded) state dicts gathered to rank 0 (:meth:`Sharded.full_state`);
  growth builds the deeper model on the meta device, shards it, and loads the grown state with a
  broadcast from rank 0.

State dicts leaving this module always use the plain model's names (``model.layers.3...``),
whatever wraps it, so checkpoints, growth and export are the same in every mode.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from rprim.core import RprimError

PREFIX = "lm."  # the plain model's name inside the loss module


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


def _device(spec: str, local: int, world: int) -> str:
    """The device of this rank: one GPU per local rank under torchrun, else as asked."""
    import torch

    from rprim.core.torch_util import resolve_device

    device = resolve_device(spec, "--set device=")
    if device.startswith("cuda") and world > 1:
        count = torch.cuda.device_count()
        if local >= count:
            raise RprimError(f"torchrun started local rank {local} but this machine has {count} GPU(s); "
                             f"use --nproc-per-node {count}, or --set device=cpu to run the ranks on the CPU")
        return f"cuda:{local}"
    return device


def init(device_pref: str = "auto") -> Dist:
    """Read the torchrun environment, pick the device, and start the process group if needed."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_pref, local, world)
    if device.startswith("cuda"):
        device = device if ":" in device else "cuda:0"  # torch 2.11 wants an index here
        torch.cuda.set_device(torch.device(device))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo",
                                             rank=rank, world_size=world)
    return Dist(rank, world, local, device)


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch

        torch.distributed.barrier()


def mean(value: Any, dist: Dist) -> float:
    """The mean over ranks of a float or a 0-d tensor, as a float (the one host sync)."""
    import torch

    if not dist.enabled:
        return float(value)
    t = (value.detach().to(dist.device, torch.float64) if torch.is_tensor(value)
         else torch.tensor(float(value), dtype=torch.float64, device=dist.device)).reshape(1)
    torch.distributed.all_reduce(t)
    return float(t.item()) / dist.world


def shutdown(dist: Dist) -> None:
    if dist.enabled:
        import torch

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _renamed(state: dict, fn: Callable[[str], str]) -> dict:
    """A model state dict, or an optimizer one keyed by names, with every name mapped by ``fn``."""
    if "state" in state and "param_groups" in state:
        return {"state": {fn(k): v for k, v in state["state"].items()},
                "param_groups": [{**g, "params": [fn(n) for n in g["params"]]} for g in state["param_groups"]]}
    return {fn(k): v for k, v in state.items()}


def _strip(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def named_param_groups(model, optimizer, like: list[dict] | None = None) -> list[dict]:
    """The optimizer's param groups with parameter names instead of tensors; hyper-parameters
    from ``like`` (a saved state's groups) where given."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for i, g in enumerate(optimizer.param_groups):
        base = {k: v for k, v in (like[i] if like else g).items() if k != "params"}
        out.append({**base, "params": [names[id(p)] for p in g["params"]]})
    return out


class Parallel:
    """How the plain model is run on this process's ranks (see the module docstring).

    Methods take the *root*, the :class:`~rprim.model_zoo.model.LossModel` around the plain
    model (``root.lm``), and ``build``, the run's :class:`~rprim.model_zoo.model.Builder`."""

    sharded = False

    def __init__(self, dist: Dist):
        self.dist = dist

    def prepare(self, root):
        """The module the training step calls, around ``root``. Build the optimizer after it."""
        raise NotImplementedError

    def sync(self, step_module, last_micro_step: bool):
        """Context for one micro-step: gradients are reduced across ranks only on the last one."""
        return contextlib.nullcontext()

    def full_state(self, root, optimizer) -> tuple[dict, dict]:
        """(model state, optimizer state) with the plain model's names (full, on rank 0)."""
        raise NotImplementedError

    def load_state(self, root, optimizer, model_state: dict, optim_state: dict) -> None:
        raise NotImplementedError

    def grow(self, root, optimizer, build) -> tuple[Any, Any]:
        """(new root, its optimizer) with the model one block deeper."""
        raise NotImplementedError

    def plain(self, root, full_model_state: dict | None, build):
        """An unsharded model to save (rank 0)."""
        return root.lm


class Replicated(Parallel):
    """One process, or DDP: every rank holds the whole model."""

    def prepare(self, root):
        if not self.dist.enabled:
            return root
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.dist.local_rank] if self.dist.device.startswith("cuda") else None
        return DDP(root, device_ids=ids)

    def sync(self, step_module, last_micro_step: bool):
        if self.dist.enabled and not last_micro_step:
            return step_module.no_sync()
        return contextlib.nullcontext()

    def full_state(self, root, optimizer) -> tuple[dict, dict]:
        return root.lm.state_dict(), optimizer.state_dict()

    def load_state(self, root, optimizer, model_state: dict, optim_state: dict) -> None:
        root.lm.load_state_dict(model_state)  # before prepare: DDP broadcasts rank 0's weights
        optimizer.load_state_dict(optim_state)

    def grow(self, root, optimizer, build) -> tuple[Any, Any]:
        """Grow in place; the new optimizer carries the remapped state of the old one."""
        from rprim.model_zoo.growth import grow_model, grow_state, load_state_by_name, optimizer_state_by_name

        cfg, model = build.cfg, root.lm
        old_state = optimizer_state_by_name(model, optimizer)
        depth = len(model.model.layers)
        grow_model(model, cfg.block_size, cfg.method)
        new_opt = build.optimizer(model)
        load_state_by_name(model, new_opt, grow_state(old_state, depth, cfg.block_size, cfg.method,
                                                      reset=cfg.reset_optimizer_on_growth))
        return root, new_opt


class Sharded(Parallel):
    """FSDP2: weights, gradients and optimizer state sharded over the ranks."""

    sharded = True

    def __init__(self, dist: Dist):
        super().__init__(dist)
        self._mesh = None

    def prepare(self, root):
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if isinstance(root, FSDPModule):
            return root
        mesh = self.mesh()
        for layer in root.lm.model.layers:
            if not isinstance(layer, FSDPModule):
                fully_shard(layer, mesh=mesh)
        fully_shard(root, mesh=mesh)
        return root

    def mesh(self):
        """The ranks as a 1-D device mesh on the run's device type. Named explicitly: FSDP's
        default mesh takes CUDA whenever a GPU is visible, so ranks pinned to the CPU (gloo)
        on a one-GPU machine would each try ``cuda:LOCAL_RANK`` ("invalid device ordinal")."""
        from torch.distributed.device_mesh import init_device_mesh

        if self._mesh is None:
            kind = "cuda" if self.dist.device.startswith("cuda") else "cpu"
            self._mesh = init_device_mesh(kind, (self.dist.world,))
        return self._mesh

    def sync(self, step_module, last_micro_step: bool):
        step_module.set_requires_gradient_sync(last_micro_step)
        return contextlib.nullcontext()

    def full_state(self, root, optimizer) -> tuple[dict, dict]:
        """Full CPU states on rank 0 (empty elsewhere). Collective: every rank calls it."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (_renamed(get_model_state_dict(root, options=opts), _strip),
                _renamed(get_optimizer_state_dict(root, optimizer, options=opts), _strip))

    def load_state(self, root, optimizer, model_state: dict, optim_state: dict | None) -> None:
        """Load full states held by rank 0 into the sharded model, broadcasting them. Collective.
        Parameters absent from ``optim_state["state"]`` start with fresh state."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(root, _renamed(model_state, PREFIX.__add__), options=opts)
        if optim_state is not None:
            set_optimizer_state_dict(root, optimizer, _renamed(optim_state, PREFIX.__add__), options=opts)

    def grow(self, root, optimizer, build) -> tuple[Any, Any]:
        """Gather full states to rank 0, grow them by name there, build the deeper model on the
        meta device, shard it, and load the grown states with a broadcast from rank 0."""
        from rprim.model_zoo.growth import grow_state

        cfg = build.cfg
        model_state, optim_state = self.full_state(root, optimizer)
        depth = len(root.lm.model.layers)
        grown = build.root(depth + cfg.block_size, meta=True)
        self.prepare(grown)
        grown.to_empty(device=self.dist.device)
        for name, buf in root.lm.named_buffers():  # non-persistent buffers (RoPE frequencies)
            grown.lm.get_buffer(name).copy_(buf)
        new_opt = build.optimizer(grown.lm)
        grown_optim = {}
        if self.dist.main:
            model_state = grow_state(model_state, depth, cfg.block_size, cfg.method)
            grown_optim = {"state": grow_state(optim_state["state"], depth, cfg.block_size, cfg.method,
                                               reset=cfg.reset_optimizer_on_growth),
                           "param_groups": named_param_groups(grown.lm, new_opt, like=optim_state["param_groups"])}
        self.load_state(grown, new_opt, model_state, grown_optim)
        return grown, new_opt

    def plain(self, root, full_model_state: dict | None, build):
        """A plain model around the gathered weights; the sharded one cannot be saved."""
        export = build.model(len(root.lm.model.layers), meta=True)
        export.load_state_dict(full_model_state, assign=True)
        return export


def strategy(dist: Dist, mode: str, optimizer: str) -> Parallel:
    """The strategy for this run: FSDP2 with several ranks and ``parallel=fsdp``, else replicated."""
    if dist.enabled and mode == "fsdp":
        if optimizer == "adafactor":
            raise RprimError("Adafactor does not run on FSDP2-sharded parameters (torch's and transformers' "
                             "implementations reject DTensors); use --set optimizer=adamw, or --set parallel=ddp")
        return Sharded(dist)
    return Replicated(dist)
