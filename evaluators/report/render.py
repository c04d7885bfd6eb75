"""Rendering a :class:`~rprim.evaluators.report.tables.Report`: figures, markdown, one HTML file.

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
from typing import Any

from rprim.core import write_text

from . import figures as F

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
# Every section takes the report's data (``Report.data()``: plain tables) and computes nothing
# but text from it.
D = dict  # the report data


def _names(d: D) -> list[str]:
    return [m["name"] for m in d["models"]]


def _by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple, dict[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in rows}


def models_section(d: D) -> Section:
    rows = []
    for m in d["models"]:
        rows.append([m["name"] + (" (baseline)" if m["name"] == d["baseline"] and m["name"] != "baseline" else ""),
                     str(m["method"] or "–"), fmt(m["val_loss"], 4), _count(m["tokens"]),
                     fmt(m["flop_ratio"], 3), _mix_text(m["mix"]),
                     f"{m['shots'] if m['shots'] is not None else '–'}-shot, n={_n_text(m['n'])}"])
    sec = Section("Models", tables=[Table(["model", "method", "final val loss", "tokens",
                                           "FLOPs / baseline", "pretraining mix", "evaluation"], rows)])
    sec.text += [f"**Warning**: {w}" for w in d.get("warnings", [])]
    if any(m["mix"] for m in d["models"]):
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


def _shots(d: D) -> str:
    shots = sorted({str(m["shots"] if m["shots"] is not None else "?") for m in d["models"]})
    return "/".join(shots) + "-shot"


def _n_text(ns: list[int]) -> str:
    return "–" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def table_section(d: D) -> Section:
    by = _by(d["rows"], "model", "group")
    names = _names(d)
    rows = [[g] + [_cell(by.get((n, g))) for n in names] for g in d["groups"] + d["finetune_groups"]]
    rows.append(["final val loss"] + [fmt(m["val_loss"], 4) for m in d["models"]])
    sec = Section("Accuracy by task group",
                  text=[f"Pretrained models, scored {_shots(d)} by greedy exact match. Task groups pool "
                        "the correct counts of their tasks; brackets are Wilson 95% intervals on the "
                        "pooled counts."],
                  tables=[Table(["group"] + names, rows)],
                  figures=["accuracy.png"])
    c = d["finetune_config"]
    if c:
        sec.after.append(
            f"`finetune` rows: the fine-tuning protocol (mean ± standard deviation over "
            f"{len(c.get('seeds', []))} seed(s)): {c.get('examples')} training examples of "
            f"{', '.join(c.get('tasks', []))}, {c.get('shots', 0)}-shot, {c.get('steps')} full-batch "
            f"steps of {c.get('optimizer')} at lr {c.get('lr')}, accuracy on {c.get('eval_n')} held-out "
            f"examples per task averaged over steps {c.get('eval_start')}..{c.get('eval_end')} "
            f"(every {c.get('eval_every')}). The paper: 3 seeds, 300 steps, window 200..300, 1000 examples.")
    return sec


def gain_section(d: D) -> Section:
    by = _by(d["rows"], "model", "group")
    others = d["others"]
    rows = [[g] + [_gain_cell(by.get((n, g))) for n in others] for g in d["groups"] + d["finetune_groups"]]
    return Section(f"Gain over {d['baseline']}",
                   text=[f"Accuracy of each model minus {d['baseline']}'s, in points, per task group "
                         "(the paper's Figure 1b). Brackets: Newcombe 95% interval of the difference "
                         "(treats the models as independent; conservative on shared examples)."],
                   tables=[Table(["group"] + others, rows)] if others else [],
                   figures=["gain.png"] if others else [])


def paired_section(d: D) -> Section:
    rows = [[r["a"], r["b"], r["group"], str(r["n"]), str(r["only_a"]), str(r["only_b"]), r["method"],
             fmt(r["statistic"], 2), P_FMT.format(r["p_value"]), str(r["unmatched"])]
            for r in d["paired"]]
    return Section(f"Paired tests against {d['baseline']} (McNemar)",
                   text=["Examples matched by id, each model against the baseline run of its own seed. "
                         "`only model` / `only base`: examples only that "
                         "model answers correctly (the discordant pairs b and c). Exact two-sided "
                         "binomial test when b + c < 25, else chi-square with continuity correction "
                         "(|b − c| − 1)² / (b + c), one degree of freedom. `unmatched`: examples "
                         "only one of the two was scored on (left out)."],
                   tables=[Table(["model", "against", "group", "paired n", "only model", "only base", "test",
                                  "statistic", "p", "unmatched"], rows)] if rows else [])


def seeds_section(d: D) -> Section | None:
    rows = d["seeds"]
    if not rows:
        return None
    sec = Section("Across pretraining seeds",
                  text=["Each method trained once per seed (`METHOD-seedN`; the first seed keeps the bare "
                        "name), every seed on its own data order and initialization, shared by the methods. "
                        "Mean, standard deviation, min and max of the seeds' accuracies per task group."],
                  tables=[Table(["method", "group", "seeds", "mean", "std", "min", "max"],
                                [[r["method"], r["group"], str(r["seeds"]), fmt(r["mean"]), fmt(r["std"]),
                                  fmt(r["min"]), fmt(r["max"])] for r in rows])])
    if d["seed_tests"]:
        sec.text.append("The second table: a paired t-test across seeds, per seed the method's accuracy "
                        "minus the baseline's (same seed), then Student's t on those differences, two-sided.")
        sec.tables.append(Table(["method", "group", "seeds", "mean difference (points)", "std", "t", "p"],
                                [[r["method"], r["group"], str(r["seeds"]), f"{100 * r['mean']:+.1f}",
                                  fmt(r["std"]), fmt(r["t"], 2),
                                  P_FMT.format(r["p_value"]) if r["p_value"] is not None else "–"]
                                 for r in d["seed_tests"]]))
    return sec


def loss_section(d: D) -> Section | None:
    if not any(pts for per in d["curves"].values() for pts in per.values()):
        return None
    sec = Section("Accuracy against validation loss",
                  text=["Each point is a training snapshot (and the final model), scored on the same "
                        "tasks; the x axis runs from high to low validation loss (the paper's Figure 4)."],
                  figures=["loss_accuracy.png"])
    eq, shown = d["equal_loss"], headline(d["groups"])
    if eq:
        target = eq[0]["val_loss"]
        rows = [[r["model"], r["group"], fmt(r["accuracy"]), fmt(r["baseline_accuracy"]),
                 f"{100 * r['difference']:+.1f}" if r["difference"] is not None else
                 (f"n/a (losses {r['loss_span'][0]:.3f}–{r['loss_span'][1]:.3f})" if r["loss_span"] else "n/a")]
                for r in eq if r["group"] in shown]
        sec.text.append(f"At equal validation loss: each model's accuracy interpolated linearly between "
                        f"its checkpoints at {d['baseline']}'s final validation loss ({target:.4f}).")
        sec.tables.append(Table(["model", "group", "accuracy", d["baseline"], "difference (points)"], rows))
    return sec


def binding_section(d: D) -> Section | None:
    rows = d["binding"]
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
        sec.text.append("The second table: depth 0 during training (snapshots, then the final model).")
        sec.tables.append(Table(["model", "checkpoint", "tokens", "n", *CLASSES], d0))
    return sec


def threshold_section(d: D) -> Section | None:
    shown = headline(d["groups"])
    rows = [r for r in d["thresholds"] if r["group"] in shown]
    if not rows or not any(m["checkpoints"] for m in d["models"]):
        return None
    keys = [k for k in rows[0] if k.startswith("tokens_to_")]
    return Section("Tokens to threshold",
                   text=["Training tokens of the first snapshot (or the final model) whose accuracy "
                         "reaches each level; `–`: never reached."],
                   tables=[Table(["model", "group", *(f"{float(k[10:]):.0%}" for k in keys)],
                                 [[r["model"], r["group"], *(_count(r[k]) for k in keys)] for r in rows])])


def analysis_sections(d: D) -> list[Section]:
    out = []
    if d["similarity"]:
        s = next(iter(d["similarity"].values()))
        out.append(Section("Block similarity",
                           text=[f"Cosine similarity between every pair of blocks' first feed-forward "
                                 f"weights ({s.get('matrix', 'gate and up projections')}, flattened; "
                                 "the paper's Figure 3), for the final models."],
                           figures=["similarity.png"]))
    if d["linearity"]:
        s = next(iter(d["linearity"].values()))
        out.append(Section("Linearity of layers",
                           text=[f"Per layer, the best linear map from the layer's input to its residual "
                                 f"update ({s.get('fit', 'least squares')}), fitted on "
                                 f"{s.get('tokens_fit', '?')} tokens and scored on {s.get('tokens_score', '?')} "
                                 f"others of {s.get('text', 'held-out text')}: R² and the mean cosine "
                                 "between prediction and update (the paper's Figure 6)."],
                           figures=["linearity.png"]))
    return out


def tasks_section(d: D) -> Section:
    by = _by(d["tasks"], "model", "task")
    names = _names(d)
    tasks = list(dict.fromkeys(r["task"] for r in d["tasks"]))
    rows = [[t] + [f"{by[(n, t)]['accuracy']:.3f} [{by[(n, t)]['ci95_lo']:.3f}, {by[(n, t)]['ci95_hi']:.3f}]"
                   if (n, t) in by else "–" for n in names]
            + [fmt(next((by[(n, t)]["chance"] for n in names if (n, t) in by), None))]
            for t in tasks]
    return Section("Accuracy per task", tables=[Table(["task"] + names + ["chance"], rows)])


def sections(d: D) -> list[Section]:
    out = [models_section(d), table_section(d), gain_section(d), seeds_section(d), paired_section(d),
           loss_section(d), threshold_section(d), binding_section(d), *analysis_sections(d), tasks_section(d)]
    if d["notes"]:
        out.append(Section("Notes", text=d["notes"]))
    return [s for s in out if s is not None]


def text_table(d: D) -> str:
    """The accuracy-by-group table as aligned plain text (for a terminal)."""
    by = _by(d["rows"], "model", "group")
    names = _names(d)
    head = ["group", *names]
    rows = [[g] + [_cell(by.get((n, g))) for n in names] for g in d["groups"] + d["finetune_groups"]]
    rows.append(["final val loss"] + [fmt(m["val_loss"], 4) for m in d["models"]])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in [head, *rows])


# ----------------------------------------------------------------------------- figures
HEADLINE = ("copying", "varassign d0", "varassign d1", "varassign d2", "varassign d3", "psm", "arithmetic")


def headline(groups: list[str]) -> list[str]:
    """The groups the loss-accuracy figure shows: one per primitive (depths, not formats)."""
    picked = [g for g in groups if g in HEADLINE or not g.startswith(("varassign ", "psm-calc"))]
    return picked or groups


def draw(d: D) -> dict[str, Any]:
    """name -> matplotlib Figure, for every figure the sections refer to."""
    groups, names = d["groups"], _names(d)
    rows = _by([r for r in d["rows"] if r["kind"] == "pretrain"], "model", "group")
    figs: dict[str, Any] = {}
    acc = {n: [rows[(n, g)]["accuracy"] if (n, g) in rows else None for g in groups] for n in names}
    ci = {n: [(rows[(n, g)]["ci95_lo"], rows[(n, g)]["ci95_hi"]) if (n, g) in rows else (None, None)
              for g in groups] for n in names}
    figs["accuracy.png"] = F.accuracy_bars(groups, acc, ci, [d["chance"][g] for g in groups])
    if d["others"]:
        gains = d["gains"]
        figs["gain.png"] = F.gain_bars(gains["groups"], gains["gains"], gains["errors"], d["baseline"])
    curves = d["curves"]
    if any(pts for per in curves.values() for pts in per.values()):
        panels = {g: curves[g] for g in headline(groups) if any(len(v) > 1 for v in curves[g].values())}
        figs["loss_accuracy.png"] = F.loss_accuracy(panels or {g: curves[g] for g in groups[:1]}, d["chance"])
    sims = [(n, _final_map(s)) for n, s in d["similarity"].items()]
    if sims:
        figs["similarity.png"] = F.heatmaps([s for s in sims if s[1] is not None],
                                            "block similarity of the final models")
    lin = {n: s["layers"] for n, s in d["linearity"].items() if s.get("layers")}
    if lin:
        figs["linearity.png"] = F.linearity(lin)
    return figs


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


def write(d: D, folder: Path, title: str = "rprim report") -> None:
    """Figures, ``report.md``, ``report.html`` and ``report.json`` (the data itself) into
    ``folder`` (a temp folder the caller publishes)."""
    from rprim.core import write_json

    figs = draw(d)
    images = {}
    for name, fig in figs.items():
        F.save(fig, folder / name)
        images[name] = (folder / name).read_bytes()
    secs = sections(d)
    for s in secs:
        s.figures = [f for f in s.figures if f in figs]
    write_text(folder / "report.md", markdown(secs, title), fsync=False)
    write_text(folder / "report.html", to_html(secs, title, images), fsync=False)
    write_json(folder / "report.json", d)
