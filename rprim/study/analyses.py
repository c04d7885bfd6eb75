"""The layer analyses' output folders (``rprim analyze --out`` and the study) and the text the
linearity analysis falls back to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rprim.core import atomic_folder, check_output_folder, write_json

ANALYSIS_KINDS = ("similarity", "linearity")  # each also the kind of its output folder


def check_analysis_out(out: str | Path, kind: str) -> Path:
    """RprimError unless ``out`` can hold an analysis of ``kind`` (similarity, linearity)."""
    from rprim.evaluators.report import figures

    figures.require()
    return check_output_folder(out, kind, legacy=(f"{kind}.json",))


def write_similarity(result: dict[str, Any], out: str | Path) -> Path:
    """``similarity.json`` and ``similarity.png`` (one heat map per snapshot) into ``out``."""
    from rprim.evaluators.report import figures

    out = check_analysis_out(out, "similarity")
    with atomic_folder(out, kind="similarity") as tmp:
        write_json(tmp / "similarity.json", result)
        maps = [(sn["label"], sn["similarity"]) for sn in result["snapshots"]]
        figures.save(figures.heatmaps(maps, f"block similarity, block size {result['block_size']}: "
                                            f"{result['model']}"), tmp / "similarity.png")
    return out


def write_linearity(result: dict[str, Any], out: str | Path) -> Path:
    """``linearity.json`` and ``linearity.png`` into ``out``."""
    from rprim.evaluators.report import figures

    out = check_analysis_out(out, "linearity")
    with atomic_folder(out, kind="linearity") as tmp:
        write_json(tmp / "linearity.json", result)
        figures.save(figures.linearity({Path(result["model"]).name: result["layers"]}), tmp / "linearity.png")
    return out


def primitives_documents(per_task: int = 6) -> list[str]:
    """Solved problems of every suite task from the ``test`` split, ``per_task`` to a document
    (separated by blank lines, like the pretraining mix): text no training run has seen."""
    import rprim.primitives as P
    from rprim.evaluators.data import continuation

    docs = []
    for name in P.suite_names():
        recs = P.get(name).generate(per_task * 4, seed=0, split="test")
        for i in range(0, len(recs), per_task):
            docs.append("\n\n".join(r["query"] + continuation(r)
                                    for r in recs[i:i + per_task]))
    return docs


LINEARITY_FALLBACK = ("solved primitives problems (test split)", primitives_documents)
