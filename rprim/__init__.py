"""rprim: reasoning primitives for language models (Saunshi et al., NeurIPS 2024).

Generate deterministic task data (``rprim.primitives``), score any Hugging Face causal LM on
it (``rprim.evaluators``), and train Baseline / GradStack / MIDAS models (``rprim.model_zoo``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rprim")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

from rprim import primitives  # noqa: E402  (light: numpy, jinja2)
from rprim.evaluators import evaluate  # noqa: E402  (torch loads only with a model)

__all__ = ["__version__", "evaluate", "primitives"]
