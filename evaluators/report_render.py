"""Rendering a :class:`~rprim.evaluators.report.Report`: figures, markdown, one HTML file.

The report is built once as a list of sections (title, paragraphs, tables, figure names);
``report.md`` and ``report.html`` are two renderings of the same sections, so they never
disagree. The HTML embeds every PNG as base64 and carries its own CSS: one file that opens
anywhere, with no external assets.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprim.core import write_text

from . import figures as F

if TYPE_CHECKING:
    from .report import Report

P_FMT = "{:.3g}"


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)   # PNG file names
    after: list[str] = field(default_factory=list)     # paragraphs after the tables


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _count(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else fmt(x)


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    if r["kind"] == "finetune":
        return f"{r['accuracy']:.3f} ± {r['std']:.3f}"
    return f"{r['accuracy']:.3f} [{r['ci95_lo']:.3f}, {r['ci95_hi']:.3f}]"


def _gain_cell(r: dict[str, Any] | None) -> str:
    if r is None or r["gain"] is None:
        return "–"
    if r["gain_lo"] is None:
        return f"{100 * r['gain']:+.1f}"
    return f"{100 * r['gain']:+.1f} [{100 * r['gain_lo']:+.1f}, {100 * r['gain_hi']:+.1f}]"


# ----------------------------------------------------------------------------- sections
def models_section(rep: "Report") -> Section:
    rows = []
    for m in rep.models:
        s = m.summary or {}
        cfg = s.get("config") or {}
        mix = s.get("mix", cfg.get("mix"))
        rows.append([m.name + (" (baseline)" if m.name == rep.baseline and m.name != "baseline" else ""),
                     str(s.get("method", "–")), fmt(m.val_loss, 4),
                     f"{s['tokens']:,}" if isinstance(s.get("tokens"), int) else "–",
                     fmt(s.get("flop_ratio"), 3), _mix_text(mix),
                     f"{m.meta.get('shots', '–')}-shot, n={_n_text(m)}"])
    sec = Section("Models", tables=[Table(["model", "method", "final val loss", "tokens",
                                           "FLOPs / baseline", "pretraining mix", "evaluation"], rows)])
    if any((m.summary or {}).get("mix") or ((m.summary or {}).get("config") or {}).get("mix")
           for m in rep.models):
        sec.after.append("The pretraining stream mixes rprim's own `train` split into the corpus "
                         "at the fractions shown (never the `test` or `fewshot` splits). The paper "
                         "pretrains on natural text only; the mix makes the primitives measurable "
                         "at this small scale.")
    return sec


def _mix_text(mix: Any) -> str:
    """The trainer's mix record (spec and realised fraction), or a plain spec."""
    if not mix:
        return "none"
    if isinstance(mix, dict) and "spec" in mix:
        frac = mix.get("fraction")
        return f"{mix['spec']}" + (f" ({frac:.1%} of training tokens)" if isinstance(frac, float) else "")
    return str(mix)


def _shots(rep: "Report") -> str:
    shots = sorted({str(m.meta.get("shots", "?")) for m in rep.models})
    return "/".join(shots) + "-shot"


def _n_text(m: Any) -> str:
    ns = sorted({t["n"] for t in m.tasks.values()})
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def table_section(rep: "Report") -> Section:
    by = {(r["model"], r["group"]): r for r in rep.rows()}
    groups = rep.groups() + rep.finetune_groups()
    rows = [[g] + [_cell(by.get((m.name, g))) for m in rep.models] for g in groups]
    rows.append(["final val loss"] + [fmt(m.val_loss, 4) for m in rep.models])
    sec = Section("Accuracy by task group",
                  text=[f"Pretrained models, scored {_shots(rep)} by greedy exact match. Task groups pool "
                        "the correct counts of their tasks; brackets are Wilson 95% intervals on the "
                        "pooled counts."],
                  tables=[Table(["group"] + [m.name for m in rep.models], rows)],
                  figures=["accuracy.png"])
    ft = [m for m in rep.models if m.finetune]
    if ft:
        c = ft[0].finetune.get("config", {})
        sec.after.append(
            f"`finetune` rows: the fine-tuning protocol (mean ± standard deviation over "
            f"{len(c.get('seeds', []))} seed(s)): {c.get('examples')} training examples of "
            f"{', '.join(c.get('tasks', []))}, {c.get('shots', 0)}-shot, {c.get('steps')} full-batch "
            f"steps of {c.get('optimizer')} at lr {c.get('lr')}, accuracy on {c.get('eval_n')} held-out "
            f"examples per task averaged over steps {c.get('eval_start')}..{c.get('eval_end')} "
            f"(every {c.get('eval_every')}). The paper: 3 seeds, 300 steps, window 200..300, 1000 examples.")
    return sec


def gain_section(rep: "Report") -> Section:
    by = {(r["model"], r["group"]): r for r in rep.rows()}
    groups = rep.groups() + rep.finetune_groups()
    rows = [[g] + [_gain_cell(by.get((m.name, g))) for m in rep.others] for g in groups]
    return Section(f"Gain over {rep.baseline}",
                   text=[f"Accuracy of each model minus {rep.baseline}'s, in points, per task group "
                         "(the paper's Figure 1b). Brackets: Newcombe 95% interval of the difference "
                         "(treats the models as independent; conservative on shared examples)."],
                   tables=[Table(["group"] + [m.name for m in rep.others], rows)] if rep.others else [],
                   figures=["gain.png"] if rep.others else [])


def paired_section(rep: "Report") -> Section:
    rows = [[r["a"], r["b"], r["group"], str(r["n"]), str(r["only_a"]), str(r["only_b"]), r["method"],
             fmt(r["statistic"], 2), P_FMT.format(r["p_value"]), str(r["unmatched"])]
            for r in rep.paired_rows()]
    return Section(f"Paired tests against {rep.baseline} (McNemar)",
                   text=["Examples matched by id, each model against the baseline run of its own seed. "
                         "`only model` / `only base`: examples only that "
                         "model answers correctly (the discordant pairs b and c). Exact two-sided "
                         "binomial test when b + c < 25, else chi-square with continuity correction "
                         "(|b − c| − 1)² / (b + c), one degree of freedom. `unmatched`: examples "
                         "only one of the two was scored on (left out)."],
                   tables=[Table(["model", "against", "group", "paired n", "only model", "only base", "test",
                                  "statistic", "p", "unmatched"], rows)] if rows else [])


def seeds_section(rep: "Report") -> Section | None:
    rows = rep.seed_rows()
    if not rows:
        return None
    sec = Section("Across pretraining seeds",
                  text=["Each method trained once per seed (`METHOD-seedN`; the first seed keeps the bare "
                        "name), every seed on its own data order and initialization, shared by the methods. "
                        "Mean, standard deviation, min and max of the seeds' accuracies per task group."],
                  tables=[Table(["method", "group", "seeds", "mean", "std", "min", "max"],
                                [[r["method"], r["group"], str(r["seeds"]), fmt(r["mean"]), fmt(r["std"]),
                                  fmt(r["min"]), fmt(r["max"])] for r in rows])])
    tests = rep.seed_tests()
    if tests:
        sec.after.append("Paired t-test across seeds: per seed the method's accuracy minus the baseline's "
                         "(same seed), then Student's t on those differences, two-sided.")
        sec.tables.append(Table(["method", "group", "seeds", "mean difference (points)", "std", "t", "p"],
                                [[r["method"], r["group"], str(r["seeds"]), f"{100 * r['mean']:+.1f}",
                                  fmt(r["std"]), fmt(r["t"], 2),
                                  P_FMT.format(r["p_value"]) if r["p_value"] is not None else "–"]
                                 for r in tests]))
    return sec


def loss_section(rep: "Report") -> Section | None:
    if not any(rep.curve(m, g) for m in rep.models for g in rep.groups()):
        return None
    sec = Section("Accuracy against validation loss",
                  text=["Each point is a training snapshot (and the final model), scored on the same "
                        "tasks; the x axis runs from high to low validation loss (the paper's Figure 4)."],
                  figures=["loss_accuracy.png"])
    eq = rep.equal_loss()
    if eq:
        target = eq[0]["val_loss"]
        rows = [[r["model"], r["group"], fmt(r["accuracy"]), fmt(r["baseline_accuracy"]),
                 f"{100 * r['difference']:+.1f}" if r["difference"] is not None else
                 (f"n/a (losses {r['loss_span'][0]:.3f}–{r['loss_span'][1]:.3f})" if r["loss_span"] else "n/a")]
                for r in eq if r["group"] in headline(rep.groups())]
        sec.text.append(f"At equal validation loss: each model's accuracy interpolated linearly between "
                        f"its checkpoints at {rep.baseline}'s final validation loss ({target:.4f}).")
        sec.tables.append(Table(["model", "group", "accuracy", f"{rep.baseline}", "difference (points)"], rows))
    return sec


def binding_section(rep: "Report") -> Section | None:
    rows = rep.binding_rows()
    if not rows:
        return None
    from .probe import CLASSES

    def share(r: dict[str, Any], c: str) -> str:
        return f"{r[c] / r['n']:.2f}" if r["n"] else "–"

    final = [[r["model"], r["group"], str(r["n"])] + [share(r, c) for c in CLASSES]
             for r in rows if r["checkpoint"] == "final"]
    d0 = [[r["model"], r["checkpoint"], _count(r["tokens"]), str(r["n"])] + [share(r, c) for c in CLASSES]
          for r in rows if r["group"] == "varassign d0"]
    sec = Section("Where variable-assignment answers come from",
                  text=["Each scored example sorted by its answer: the bound value (`correct`), the "
                        "program's first or last line's value, another value of the program, or "
                        "anything outside it; shares of the examples. A model at chance that answers "
                        "with a value of the program has learnt to look the program up but not to bind "
                        "(the phases of Wu, Geiger & Millière 2025)."],
                  tables=[Table(["model", "group", "n", *CLASSES], final)])
    if len({r[1] for r in d0}) > 1:
        sec.after.append("Depth 0 during training (snapshots, then the final model):")
        sec.tables.append(Table(["model", "checkpoint", "tokens", "n", *CLASSES], d0))
    return sec


def threshold_section(rep: "Report") -> Section | None:
    rows = [r for r in rep.thresholds() if r["group"] in headline(rep.groups())]
    if not rows or not any(len(m.checkpoints) for m in rep.models):
        return None
    keys = [k for k in rows[0] if k.startswith("tokens_to_")]
    return Section("Tokens to threshold",
                   text=["Training tokens of the first snapshot (or the final model) whose accuracy "
                         "reaches each level; `–`: never reached."],
                   tables=[Table(["model", "group", *(f"{float(k[10:]):.0%}" for k in keys)],
                                 [[r["model"], r["group"], *(_count(r[k])
                                                             for k in keys)] for r in rows])])


def analysis_sections(rep: "Report") -> list[Section]:
    out = []
    if any(m.similarity for m in rep.models):
        s = next(m.similarity for m in rep.models if m.similarity)
        out.append(Section("Block similarity",
                           text=[f"Cosine similarity between every pair of blocks' first feed-forward "
                                 f"weights ({s.get('matrix', 'gate and up projections')}, flattened; "
                                 "the paper's Figure 3), for the final models."],
                           figures=["similarity.png"]))
    if any(m.linearity for m in rep.models):
        s = next(m.linearity for m in rep.models if m.linearity)
        out.append(Section("Linearity of layers",
                           text=[f"Per layer, the best linear map from the layer's input to its residual "
                                 f"update ({s.get('fit', 'least squares')}), fitted on "
                                 f"{s.get('tokens_fit', '?')} tokens and scored on {s.get('tokens_score', '?')} "
                                 f"others of {s.get('text', 'held-out text')}: R² and the mean cosine "
                                 "between prediction and update (the paper's Figure 6)."],
                           figures=["linearity.png"]))
    return out


def tasks_section(rep: "Report") -> Section:
    by = {(r["model"], r["task"]): r for r in rep.task_rows()}
    tasks = list(dict.fromkeys(t for m in rep.models for t in m.tasks))
    rows = [[t] + [(f"{by[(m.name, t)]['accuracy']:.3f} [{by[(m.name, t)]['ci95_lo']:.3f}, "
                    f"{by[(m.name, t)]['ci95_hi']:.3f}]") if (m.name, t) in by else "–"
                   for m in rep.models] + [fmt(next((by[(m.name, t)]["chance"] for m in rep.models
                                                     if (m.name, t) in by), None))]
            for t in tasks]
    return Section("Accuracy per task", tables=[Table(["task"] + [m.name for m in rep.models] + ["chance"], rows)])


def sections(rep: "Report", notes: list[str]) -> list[Section]:
    out = [models_section(rep), table_section(rep), gain_section(rep)]
    seeds = seeds_section(rep)
    out += [seeds] if seeds is not None else []
    out.append(paired_section(rep))
    for extra in (loss_section(rep), threshold_section(rep), binding_section(rep)):
        if extra is not None:
            out.append(extra)
    out += analysis_sections(rep)
    out.append(tasks_section(rep))
    if notes:
        out.append(Section("Notes", text=notes))
    return out


# ----------------------------------------------------------------------------- figures
HEADLINE = ("copying", "varassign d0", "varassign d1", "varassign d2", "varassign d3", "psm", "arithmetic")


def headline(groups: list[str]) -> list[str]:
    """The groups the loss-accuracy figure shows: one per primitive (depths, not formats)."""
    picked = [g for g in groups if g in HEADLINE or not g.startswith(("varassign ", "psm-calc"))]
    return picked or groups
def draw(rep: "Report") -> dict[str, Any]:
    """name -> matplotlib Figure, for every figure the sections refer to."""
    groups = rep.groups()
    rows = {(r["model"], r["group"]): r for r in rep.rows()}
    figs: dict[str, Any] = {}
    acc = {m.name: [rows[(m.name, g)]["accuracy"] if (m.name, g) in rows else None for g in groups]
           for m in rep.models}
    ci = {m.name: [(rows[(m.name, g)]["ci95_lo"], rows[(m.name, g)]["ci95_hi"]) if (m.name, g) in rows
                   else (None, None) for g in groups] for m in rep.models}
    figs["accuracy.png"] = F.accuracy_bars(groups, acc, ci, [_chance(rep, g) for g in groups])
    if rep.others:
        g_all, gains, errors = rep.gains()
        figs["gain.png"] = F.gain_bars(g_all, gains, errors, rep.baseline)
    panels = {g: {m.name: rep.curve(m, g) for m in rep.models} for g in headline(groups)}
    panels = {g: p for g, p in panels.items() if any(len(v) > 1 for v in p.values())}
    if any(rep.curve(m, g) for m in rep.models for g in groups):
        figs["loss_accuracy.png"] = F.loss_accuracy(panels or {g: {m.name: rep.curve(m, g) for m in rep.models}
                                                               for g in groups[:1]},
                                                    {g: _chance(rep, g) for g in groups})
    sims = [(m.name, _final_map(m.similarity)) for m in rep.models if m.similarity]
    if sims:
        figs["similarity.png"] = F.heatmaps([s for s in sims if s[1] is not None],
                                            "block similarity of the final models")
    lin = {m.name: m.linearity["layers"] for m in rep.models if m.linearity and m.linearity.get("layers")}
    if lin:
        figs["linearity.png"] = F.linearity(lin)
    return figs


def _chance(rep: "Report", group: str) -> float | None:
    from .report_data import task_groups

    values = {t.get("chance") for m in rep.models for name, t in m.tasks.items() if group in task_groups(name)}
    return values.pop() if len(values) == 1 else None


def _final_map(sim: dict[str, Any]) -> Any:
    snaps = sim.get("snapshots") or []
    return snaps[-1]["similarity"] if snaps else None


# ----------------------------------------------------------------------------- markdown, html
def _md_table(t: Table) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in row] for row in [t.head, *t.rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in t.head) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in esc[1:]]


def markdown(secs: list[Section], title: str) -> str:
    out = [f"# {title}", ""]
    for s in secs:
        out += [f"## {s.title}", ""]
        for p in s.text:
            out += [p, ""]
        for t in s.tables:
            out += _md_table(t) + [""]
        for f in s.figures:
            out += [f"![{f}]({f})", ""]
        for p in s.after:
            out += [p, ""]
    return "\n".join(out).rstrip() + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
       "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
       "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
       "img{max-width:100%;display:block;margin:1em 0}code{background:#f3f3f3;padding:0 3px}")


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code> (the only markdown the paragraphs use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(secs: list[Section], title: str, images: dict[str, bytes]) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    for s in secs:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        out += [f"<p>{_inline(p)}</p>" for p in s.text]
        for t in s.tables:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.rows]
            out.append("</table>")
        for f in s.figures:
            if f in images:
                data = base64.b64encode(images[f]).decode("ascii")
                out.append(f'<img alt="{html.escape(f)}" src="data:image/png;base64,{data}">')
        out += [f"<p>{_inline(p)}</p>" for p in s.after]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write(rep: "Report", folder: Path, notes: list[str], title: str = "rprim report") -> None:
    """Figures, ``report.md`` and ``report.html`` into ``folder`` (a temp folder the caller
    publishes); the data behind the figures goes to ``report.json``."""
    from rprim.core import write_json

    figs = draw(rep)
    images = {}
    for name, fig in figs.items():
        F.save(fig, folder / name)
        images[name] = (folder / name).read_bytes()
    secs = sections(rep, notes)
    for s in secs:
        s.figures = [f for f in s.figures if f in figs]
    write_text(folder / "report.md", markdown(secs, title), fsync=False)
    write_text(folder / "report.html", to_html(secs, title, images), fsync=False)
    write_json(folder / "report.json", {"baseline": rep.baseline, "rows": rep.rows(),
                                        "tasks": rep.task_rows(), "equal_loss": rep.equal_loss(),
                                        "paired": rep.paired_rows(), "seeds": rep.seed_rows(),
                                        "seed_tests": rep.seed_tests(),
                                        "checkpoints": rep.checkpoint_rows(), "thresholds": rep.thresholds(),
                                        "binding": rep.binding_rows(), "notes": notes})
