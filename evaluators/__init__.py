"""Scoring language models on the primitives: greedy exact match, fast and exact.

    >>> from rprim.evaluators import evaluate
    >>> res = evaluate("smollm2-135m", tasks="varassign-code-d0", n=100)
    >>> res.to_frame(); res.save("out/")
    >>> evaluate(model, tokenizer=tok, tasks={"mytask": [{"prompt": "2+2=", "target": "4"}]})

Layout: ``backend`` (the engine interface), ``hf`` (transformers engine), ``vllm`` (vLLM
engine), ``tokens`` (BOS rule, prompt encoding, stop rules shared by the engines), ``loading``
(config and tokenizer first, weights last), ``data`` (tasks, a user's own records, answer
budgets), ``scoring`` (exact / flexible / Wilson), ``results`` (Results, atomic save),
``reference`` (offline reference models), ``evaluate`` (the pipeline). Heavy imports (torch,
transformers) happen only when a model is loaded.
"""

from .backend import Backend, Generation, Request
from .data import read_records, task_names
from .evaluate import evaluate, make_backend
from .results import Results
from .scoring import TaskScore, exact, flexible, prediction, wilson

__all__ = ["Backend", "Generation", "Request", "Results", "TaskScore", "evaluate", "exact",
           "flexible", "make_backend", "prediction", "read_records", "task_names", "wilson"]
