"""What gets scored: task names, their records, a user's own records, and the answer budget.

* Registered tasks: the frozen suite (1000 test examples per task at seed 0) or, for other
  tasks and seeds, records generated on the spot (at most ``MAX_GENERATED_N`` per task).
* A user's own records (``rprim eval --data FILE.jsonl`` or ``evaluate(model,
  tasks={"mytask": records})``): each needs ``prompt`` and ``target``, as ``rprim generate``
  writes them; ``target_delimiter`` (default ``" "``), ``until`` (default newline) and ``id``
  are optional.
* The answer budget (tokens decoded at most) is a function of the *task*, not of ``--n``: the
  longest answer over a fixed sample (the first ``BUDGET_SAMPLE`` records of the task at that
  seed, or all of a user's records), plus ``ANSWER_MARGIN``. So an example's prediction does
  not change with how many examples are scored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import rprim.primitives as P
from rprim.core import RprimError

DEFAULT_N = 1000
MAX_GENERATED_N = 100_000  # records are held in memory (a 5-shot prompt is ~2 kB)
BUDGET_SAMPLE = 1000
ANSWER_MARGIN = 8  # decode up to (longest answer + this many) tokens


@dataclass
class TaskData:
    """One task to score: its records and the fixed sample its answer budget comes from."""

    name: str
    records: list[dict[str, Any]]
    sample: list[dict[str, Any]]
    chance: float | None = None
    shots: int | None = None

    def continuations(self, rows: Sequence[dict[str, Any]] | None = None) -> list[str]:
        return [continuation(r) for r in (self.sample if rows is None else rows)]


def continuation(record: Mapping[str, Any]) -> str:
    """What a correct model says after the prompt: the target delimiter, then the target."""
    return record["target_delimiter"] + record["target"]


@dataclass
class EvalSet:
    """Tasks with their answer budgets, known before any weights are loaded; built once and
    scored as often as needed (fine-tuning scores one set at every evaluation step)."""

    tasks: list[TaskData]
    budgets: dict[str, int]

    @property
    def total(self) -> int:
        return sum(len(t.records) for t in self.tasks)


def eval_set(tasks: list[TaskData], count_many: Callable[[Sequence[str]], list[int]],
             max_new_tokens: int | None = None) -> EvalSet:
    """``tasks`` with each one's answer budget, counted with the model's tokenizer."""
    return EvalSet(tasks, {t.name: max_new_tokens or answer_budget(t, count_many) for t in tasks})


def task_names(tasks: str | Sequence[str] | None) -> list[str]:
    """``None``/``"suite"`` -> the canonical suite; ``"a,b"`` or a list -> those names, checked."""
    if tasks is None or tasks == "suite":
        return P.suite_names()
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    names = [t for t in names if t]
    if not names:
        raise RprimError("the task list is empty; pass --tasks suite or names like "
                         "varassign-code-d0,arithmetic (see `rprim tasks`)")
    out: list[str] = []
    for t in names:
        if t == "suite":
            out += [s for s in P.suite_names() if s not in out]
        else:
            P.resolve(t)  # RprimError with suggestions for unknown names
            if t not in out:
                out.append(t)
    return out


def _suite_available() -> bool:
    return (P.suite_dir() / "manifest.json").is_file()


def check_n(n: int | None, flag: str = "--n") -> None:
    """A positive count that fits in memory (checked before any data is made)."""
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise RprimError(f"{flag} must be a positive number of examples (got {n!r})")
    if n > MAX_GENERATED_N:
        raise RprimError(f"{flag} {n:,} is more than rprim eval scores per task "
                         f"({MAX_GENERATED_N:,}; the frozen suite holds 1000 per task at seed 0); "
                         f"pass a smaller {flag}")


def _suite_records(task: Any, shots: int, n: int | None, seed: int) -> list[dict[str, Any]]:
    recs = P.load_suite([task.name])[task.name]
    if n is not None and n > len(recs):
        raise RprimError(f"the frozen suite has {len(recs)} examples of {task.name}; "
                         f"pass --n {len(recs)} or less (or another --seed to generate more)")
    prefix = task.fewshot_prefix(seed, shots) if shots else ""
    return [{**r, "prompt": prefix + r["query"], "num_fewshot": shots} for r in recs]


def _registered(name: str, shots: int, n: int | None,
                seed: int) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(task, its first n records with k-shot prompts, the frozen suite's records or None):
    suite tasks at seed 0 read the frozen suite, others are generated."""
    task = P.get(name)
    if name in P.SUITE and seed == 0 and _suite_available():
        suite = _suite_records(task, shots, n, seed)
        return task, suite[:n or DEFAULT_N], suite
    return task, task.generate(n or DEFAULT_N, seed=seed, split="test", shots=shots), None


def task_data(name: str, shots: int, n: int | None, seed: int) -> TaskData:
    """Records of a registered task (k-shot prompts) and the sample for its answer budget:
    the frozen suite's 1000 records, or the first ``BUDGET_SAMPLE`` draws of the task's test
    stream at that seed (repeats allowed, so tasks with few distinct queries have one too)."""
    check_n(n)
    task, recs, suite = _registered(name, shots, n, seed)
    sample = suite if suite is not None else task.generate(BUDGET_SAMPLE, seed=seed, split="test",
                                                           unique=False)
    return TaskData(task.name, recs, sample, task.chance, shots)


def task_records(name: str, shots: int, n: int | None, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    """(task, the first n records with k-shot prompts), as :func:`task_data` reads them
    (``rprim export`` uses this, without eval's cap on n)."""
    if n is not None and n <= 0:
        raise RprimError(f"--n must be a positive number of examples (got {n})")
    task, recs, _ = _registered(name, shots, n, seed)
    return task, recs


def user_task_data(name: str, records: Sequence[Any], n: int | None = None,
                   where: str = "records") -> TaskData:
    """A user's own records, checked and completed with the defaults of the module doc."""
    check_n(n)
    if not isinstance(name, str) or not name.strip():
        raise RprimError(f"task names must be non-empty strings (got {name!r})")
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence) or not records:
        raise RprimError(f"{where} of {name!r}: give a non-empty list of records (dicts with "
                         "prompt and target)")
    out = []
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise RprimError(f"{where}: record {i} of {name!r} is not an object with prompt and target")
        for key in ("prompt", "target"):
            if not isinstance(r.get(key), str):
                raise RprimError(f"{where}: record {i} of {name!r} has no text {key!r}; records "
                                 "need prompt and target, as `rprim generate` writes them")
        until = r.get("until", ["\n"])
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, (list, tuple)) or not all(isinstance(u, str) and u for u in until):
            raise RprimError(f"{where}: record {i} of {name!r} has a bad 'until' (a list of "
                             "non-empty strings)")
        delim = r.get("target_delimiter", " ")
        if not isinstance(delim, str):
            raise RprimError(f"{where}: record {i} of {name!r} has a non-text target_delimiter")
        out.append({**r, "id": str(r.get("id", f"{name}/{i}")), "target_delimiter": delim,
                    "until": list(until)})
    ids: dict[str, int] = {}
    for i, r in enumerate(out):
        if r["id"] in ids:
            raise RprimError(f"{where}: records {ids[r['id']]} and {i} of {name!r} have the same id "
                             f"{r['id']!r} (ids are compared as text; paired tests match by id); "
                             "give every record its own id")
        ids[r["id"]] = i
    if n is not None and n > len(out):
        raise RprimError(f"--n {n} but {name!r} has {len(out)} records; pass --n {len(out)} or less")
    chance = None
    try:
        chance = P.get(name).chance
    except (RprimError, KeyError, ValueError):
        pass
    return TaskData(name, out[:n] if n else out, out, chance, None)


def sample_file(task: str) -> str:
    """The file name of a task's per-example samples (``samples/<this>.jsonl``): the task name
    with ``/`` as ``_``. Every place that writes or reads samples uses this one function."""
    return task.replace("/", "_") + ".jsonl"


def check_user_names(names: Sequence[str]) -> None:
    """Task names of a user's own records must each give their own, valid samples file
    (checked before scoring: ``a/b`` and ``a_b`` would overwrite each other's samples)."""
    seen: dict[str, str] = {}
    for name in names:
        file = sample_file(name)
        if "\0" in name or len(file.encode("utf-8")) > 200 or file.startswith("."):
            raise RprimError(f"task name {name[:60]!r}{'...' if len(name) > 60 else ''} cannot name a "
                             "samples file (no NUL, at most about 190 bytes, not starting with '.'); "
                             "rename the task")
        if file in seen:
            raise RprimError(f"task names {seen[file]!r} and {name!r} both save their samples as "
                             f"samples/{file}; rename one")
        seen[file] = name


def read_records(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Records of a JSONL file, grouped by their ``task`` field (the file's stem without one)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RprimError(f"--data {path}: no such file; pass a .jsonl file from `rprim generate --out`")
    groups: dict[str, list[dict[str, Any]]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for k, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RprimError(f"--data {path}: line {k} is not JSON ({e.msg}); records are "
                                     "one JSON object per line") from None
                if not isinstance(rec, dict):
                    raise RprimError(f"--data {path}: line {k} is not a JSON object")
                name = rec.get("task") if isinstance(rec.get("task"), str) and rec["task"] else path.stem
                groups.setdefault(name, []).append(rec)
    except UnicodeDecodeError:
        raise RprimError(f"--data {path} is not UTF-8 text; pass a .jsonl file") from None
    except OSError as e:
        raise RprimError(f"--data {path}: cannot read it ({e.strerror or e})") from None
    if not groups:
        raise RprimError(f"--data {path} holds no records")
    return groups


def prepare(tasks: Any, shots: int, n: int | None, seed: int) -> list[TaskData]:
    """Every task to score, as TaskData: registered names, or a mapping name -> records."""
    if isinstance(tasks, Mapping):
        if not tasks:
            raise RprimError("the task mapping is empty; give {name: [records]}")
        check_user_names([str(name) for name in tasks])
        return [user_task_data(str(name), recs, n) for name, recs in tasks.items()]
    return [task_data(name, shots, n, seed) for name in task_names(tasks)]


def answer_budget(data: TaskData, count_many: Callable[[Sequence[str]], list[int]]) -> int:
    """Tokens to decode at most for ``data``: longest answer over its fixed sample + ``ANSWER_MARGIN``.

    The scored records are counted too, for the rare record longer than every sample answer
    (then, and only then, the budget can depend on which records are scored)."""
    conts = data.continuations()
    known = set(conts)
    extra = sorted({c for c in data.continuations(data.records) if c not in known})
    return max(count_many(conts + extra), default=0) + ANSWER_MARGIN


def data_hash(records: Sequence[dict[str, Any]]) -> str:
    """sha256 over exactly what was scored: each prompt and target."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r["prompt"], r["target_delimiter"], r["target"]]).encode())
    return h.hexdigest()
