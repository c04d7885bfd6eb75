"""Scoring language models on the primitives: greedy exact match, fast and exact.

    >>> from rprim.evaluators import evaluate
    >>> res = evaluate("smollm2-135m", tasks="varassign-code-d0", n=100)
    >>> res.to_frame(); res.save("out/")

Layout: ``backend`` (the engine interface), ``hf`` (transformers engine), ``scoring``
(exact / flexible / Wilson), ``results`` (Results, atomic save), ``reference`` (offline
reference models), ``evaluate`` (the pipeline). Heavy imports (torch, transformers) happen
only when a model is loaded.
"""

from .backend import Backend, Generation, Request
from .evaluate import evaluate, task_names
from .results import Results
from .scoring import TaskScore, flexible, prediction, wilson

__all__ = ["Backend", "Generation", "Request", "Results", "TaskScore", "evaluate", "flexible",
           "prediction", "task_names", "wilson"]
