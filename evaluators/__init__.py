"""Scoring language models on the primitives: greedy exact match, fast and exact.

    >>> from rprim.evaluators import evaluate
    >>> res = evaluate("smollm2-135m", tasks="varassign-code-d0", n=100)
    >>> res.to_frame(); res.save("out/")
    >>> evaluate(model, tokenizer=tok, tasks={"mytask": [{"prompt": "2+2=", "target": "4"}]})

Layout, by what it holds: the evaluation pipeline at the top (``data``: tasks, a user's own
records, answer budgets; ``evaluate``: the pipeline and the scoring layer under it; ``scoring``:
exact / flexible / Wilson; ``results``: Results, atomic save; ``export``: lm-eval and parquet
exports); ``engine/`` opens a model once and runs it (model spec, loading, BOS and stop rules,
the transformers and vLLM engines, reference models); ``finetune/`` the paper's fine-tuning
protocol; ``report/`` reads results folders, computes the report's tables, then draws them.
Heavy imports (torch, transformers) happen only when a model is loaded.
"""

from .engine.backend import Backend, Generation, Request
from .data import read_records, task_names
from .evaluate import evaluate, make_backend
from .results import Results
from .scoring import TaskScore, exact, flexible, prediction, wilson

__all__ = ["Backend", "Generation", "Request", "Results", "TaskScore", "evaluate", "exact",
           "flexible", "make_backend", "prediction", "read_records", "task_names", "wilson"]
