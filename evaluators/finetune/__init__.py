"""The paper's fine-tuning protocol (Saunshi et al. 2024, appendix B.2), for any HF causal LM.

    >>> from rprim.evaluators.finetune import FinetuneConfig, finetune
    >>> res = finetune("model/", FinetuneConfig(examples=64, seeds=(0, 1, 2)), out="ft/")
    >>> print(res.table()); res.accuracy("varassign-code-d2"); res.to_frame()

``protocol`` (each seed's data and run, :func:`finetune`), ``config`` (the settings),
``results`` (:class:`FinetuneResults`: the results file and resuming), ``memory`` (micro-batch
sizing), ``progress`` (the bar with an ETA).
"""

from .config import FinetuneConfig
from .protocol import finetune
from .results import FinetuneResults

__all__ = ["FinetuneConfig", "FinetuneResults", "finetune"]
