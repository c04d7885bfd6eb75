"""Independent solvers: read a query as a person would and compute its answer.

They share nothing with the generators (no metadata, no codes): they parse the prompt text.
"""

from __future__ import annotations

import re

VARASSIGN_LINE = re.compile(r"^([a-z]+)=(-?\d+|[a-z]+)$")


def program_lines(query: str, fmt: str) -> tuple[list[str], str]:
    """The assignment lines and the queried variable of a varassign query."""
    lines = query.split("\n")
    if fmt == "basic":
        assert lines[0] == "Fill in blank:"
        m = re.fullmatch(r"([a-z]+)=___\. ->", lines[-1])
        return lines[1:-1], m.group(1)
    if fmt == "math":
        assert lines[0] == "The following is a set of simple mathematical equations."
        m = re.fullmatch(r"What is the numerical value of ([a-z]+)\?", lines[-2])
        assert lines[-1] == "Answer:"
        return lines[1:-2], m.group(1)
    assert fmt == "code"
    assert lines[1] == "Program:" and lines[-3] == "Question:" and lines[-1] == "Answer:"
    m = re.fullmatch(r"What is the value of ([a-z]+)\?", lines[-2])
    return lines[2:-3], m.group(1)


def solve_code(query: str) -> str:
    """Run the program with Python itself on a fresh namespace and read the variable."""
    lines, var = program_lines(query, "code")
    namespace: dict = {"__builtins__": {}}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated test data
    return str(namespace[var])


def resolve_assignments(lines: list[str], var: str) -> tuple[str, int]:
    """Parse name=value lines, follow the chain; returns (value, hops)."""
    table: dict[str, str] = {}
    for line in lines:
        m = VARASSIGN_LINE.fullmatch(line)
        assert m, line
        assert m.group(1) not in table, f"name assigned twice: {line}"
        table[m.group(1)] = m.group(2)
    hops, value = 0, table[var]
    while not re.fullmatch(r"-?\d+", value):
        value = table[value]
        hops += 1
    return value, hops


def solve_copying(query: str, n: int, m: int) -> str:
    head, body = query.split("\n")
    assert head == "Fill in blank:" and body.endswith(" ___. ->")
    words = body[: -len(" ___. ->")].split(" ")
    assert len(words) == n + m
    seq, span = words[:n], words[n:]
    hits = [i for i in range(n - m) if seq[i:i + m] == span]
    assert len(hits) == 1, "the copied span must occur exactly once, with a word after it"
    return seq[hits[0] + m]


def solve_psm(query: str) -> tuple[str, str]:
    """(substituted expression, its value) of a pre-school math query."""
    lines = query.split("\n")
    assert lines[0] == "Fill in blank:" and len(lines) == 5
    consts = {}
    for line in lines[1:3]:
        name, value = line.split("=")
        consts[name] = int(value)
    result, expr = lines[3].split("=")
    assert lines[4] == f"{result}=_ ->"
    terms = re.findall(r"([+-])([a-z])", expr)
    assert "".join(s + v for s, v in terms) == expr and len(terms) == 2
    assert {v for _, v in terms} == set(consts)
    substituted = "".join(f"{s}{consts[v]}" for s, v in terms)
    value = sum(consts[v] * (1 if s == "+" else -1) for s, v in terms)
    return substituted, str(value)


def eval_signed_sum(expr: str) -> int:
    terms = re.findall(r"([+-])(\d+)", expr)
    assert "".join(s + d for s, d in terms) == expr and len(terms) == 2, expr
    return sum(int(d) * (1 if s == "+" else -1) for s, d in terms)


def solve_arithmetic(query: str) -> str:
    lines = query.split("\n")
    for line in lines[:-1]:
        expr, value = line.split("=")
        assert eval_signed_sum(expr) == int(value), line
    assert lines[-1].endswith("=")
    return str(eval_signed_sum(lines[-1][:-1]))
