"""``rprim study``: Baseline vs GradStack vs MIDAS, end to end, as the paper compares them.

One call trains the methods on the same data order and token budget (same seed, same sampler,
same steps; GradStack and MIDAS with the same schedule and block size), evaluates snapshots at
several token counts and the final models on the 5-shot suite (and variable assignment at depth
3, held out), runs the fine-tuning protocol on each final model, runs both layer analyses, and
writes the report. The folder's layout is :mod:`rprim.core.layout`.

Every part's output folder is its done-marker, written atomically: a rerun skips finished parts
and an interrupted study resumes (training from its latest checkpoint). This package is the top
layer: it may import every package. By job:

- :mod:`.presets`   what each preset trains and measures (mixes, regimes, the held-out depth);
- :mod:`.settings`  a resolved study, every check before the folder exists, resume compatibility;
- :mod:`.parts`     the resumable parts (train, score, fine-tune, analyze, report);
- :mod:`.analyses`  the layer analyses' output folders and the linearity fallback text;
- :mod:`.runner`    running the parts in order with an ETA.
"""

from __future__ import annotations

from .analyses import (ANALYSIS_KINDS, LINEARITY_FALLBACK, check_analysis_out, primitives_documents,
                       write_linearity, write_similarity)
from .parts import Part, periodic_snapshots, results_dir, run_dir, run_name, study_notes
from .presets import DEFAULT_MIX, HELD_OUT, METHODS, PRESETS, REGIMES, SMALL_MIX, StudyPreset
from .runner import study_parts, run
from .settings import StudySettings, parse_methods, resolve, train_config

__all__ = [
    "ANALYSIS_KINDS", "DEFAULT_MIX", "HELD_OUT", "LINEARITY_FALLBACK", "METHODS", "PRESETS", "Part",
    "REGIMES", "SMALL_MIX", "StudyPreset", "StudySettings", "check_analysis_out", "parse_methods",
    "periodic_snapshots", "study_parts", "primitives_documents", "resolve", "results_dir", "run",
    "run_dir", "run_name", "study_notes", "train_config", "write_linearity", "write_similarity",
]
