"""The Baseline / GradStack / MIDAS trainer (Saunshi et al., NeurIPS 2024).

Modules, in the order data flows through them:

- ``presets``    the :class:`TrainConfig` dataclass and the named presets (tiny ... paper-8b)
- ``schedule``   stage boundaries (PROP-alpha or explicit fractions) and the LR schedule
- ``flops``      FLOP accounting per stage and the ratio to the baseline
- ``growth``     pure growth operators on layer lists and optimizer state (GradStack, MIDAS)
- ``corpora``    built-in corpora (stdlib-python, shakespeare) and local files
- ``tokenizer``  byte-level BPE with single-digit splitting
- ``data``       memory-mapped token file, packing, held-out split, resumable sampler
- ``checkpoint`` atomic checkpoints
- ``distributed`` DDP, applied from the outside in one place
- ``train``      the training loop

User errors are ``rprim.core.RprimError``. Importing this package is light: torch and transformers load only when a trainer module is
imported.
"""

from rprim.model_zoo.presets import PRESETS, TrainConfig, resolve_config

__all__ = ["PRESETS", "TrainConfig", "resolve_config"]
