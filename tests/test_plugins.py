"""A primitive from another package: one file plus its templates, found through entry points.

The plugins are installed the way pip installs a package (a module on the path and a
``.dist-info`` with ``entry_points.txt``), then used through the CLI in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PARITY = '''
"""Parity of a bit string: a whole primitive in one file (templates/parity/*.j2 beside it)."""
import re
from dataclasses import dataclass

import numpy as np

from rprim.primitives import Primitive
from rprim.primitives.render import Slot


@dataclass(frozen=True)
class ParityConfig:
    bits: int = 10
    format: str = "plain"


class Parity(Primitive):
    family = "parity"
    Config = ParityConfig

    @property
    def name(self):
        return f"parity-{self.config.bits}" + ("" if self.config.format == "plain" else f"-f{self.config.format}")

    @classmethod
    def parse_name(cls, name):
        m = re.fullmatch(r"parity-(\\d+)(?:-f(\\w+))?", name)
        if m is None:
            return {} if name == cls.family else None
        return {"bits": int(m[1]), **({"format": m[2]} if m[2] else {})}

    def space(self):
        return 2 ** self.config.bits, 1

    def context(self):
        return {"bits": [Slot(f"b{i}") for i in range(self.config.bits)]}

    def metadata_layout(self):
        return {}

    def sample(self, draws):
        b = draws.integers(2, self.config.bits)
        codes = {f"b{i}": b[:, i] for i in range(self.config.bits)}
        codes["answer"] = b.sum(axis=1) % 2
        return codes, np.ones(len(b), dtype=bool)

    def decode(self, codes):
        return {k: list(map(str, v.tolist())) for k, v in codes.items()}
'''

# The smallest plugin: its template inline, its names from the default `parse_name`.
ECHO = '''
from dataclasses import dataclass

import numpy as np

from rprim.primitives import Primitive
from rprim.primitives.render import Slot


@dataclass(frozen=True)
class EchoConfig:
    letters: int = 3
    format: str = "say"


class Echo(Primitive):
    family = "echo"
    Config = EchoConfig
    templates = {"say": "Say {{ word }}:"}

    @property
    def name(self):
        return f"echo-{self.config.letters}"

    def context(self):
        return {"word": Slot("w")}

    def metadata_layout(self):
        return {}

    def sample(self, draws):
        w = draws.integers(26 ** self.config.letters)[:, 0]
        return {"w": w, "answer": w}, np.ones(len(w), dtype=bool)

    def decode(self, codes):
        def word(v):
            return "".join(chr(97 + (v // 26 ** i) % 26) for i in range(self.config.letters))
        return {k: [word(v) for v in vals.tolist()] for k, vals in codes.items()}
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    (site / "rprim_parity.py").write_text(textwrap.dedent(PARITY))
    (site / "templates" / "parity").mkdir(parents=True)
    (site / "templates" / "parity" / "plain.j2").write_text("Parity of {{ bits | join('') }}:")
    (site / "templates" / "parity" / "spaced.j2").write_text("Bits: {{ bits | join(' ') }}. Parity:")
    (site / "rprim_echo.py").write_text(textwrap.dedent(ECHO))
    dist = site / "rprim_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rprim-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[rprim.primitives]\nparity = rprim_parity:Parity\necho = rprim_echo:Echo\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprim", *args], env=env, capture_output=True, text=True)


def records(r: subprocess.CompletedProcess) -> list[dict]:
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_plugin_appears_in_tasks(plugin_env):
    r = run(plugin_env, "tasks")
    assert r.returncode == 0, r.stderr
    assert "parity\n  formats: plain, spaced" in r.stdout and "echo\n  formats: say" in r.stdout


def test_plugin_generates_correct_examples(plugin_env):
    recs = records(run(plugin_env, "generate", "--task", "parity", "--n", "20"))
    assert len(recs) == 20 and recs[0]["task"] == "parity-10"
    for r in recs:
        bits = r["query"].removeprefix("Parity of ").removesuffix(":")
        assert len(bits) == 10 and r["target"] == str(bits.count("1") % 2)


def test_plugin_names_resolve_like_built_in_ones(plugin_env):
    """Issue 9: `resolve("parity-10")` raised "unknown task": the registry owned the grammar."""
    assert records(run(plugin_env, "generate", "--task", "parity-10", "--n", "3"))[0]["params"]["bits"] == 10
    twelve = records(run(plugin_env, "generate", "--task", "parity", "-p", "bits=12", "--format", "spaced", "--n", "3"))
    assert twelve[0]["task"] == "parity-12-fspaced" and twelve[0]["query"].startswith("Bits: ")
    again = records(run(plugin_env, "generate", "--task", "parity-12-fspaced", "--n", "3"))
    assert again == twelve  # a record's task name gives back the same task
    echo = records(run(plugin_env, "generate", "--task", "echo-3", "--n", "2"))  # default parse_name
    assert echo[0]["task"] == "echo-3" and echo[0]["query"] == f"Say {echo[0]['target']}:"
    code = ("import rprim.primitives as P; print(P.resolve('parity-7'), P.resolve('echo-3'), "
            "P.resolve('varassign-code-d2'))")
    r = subprocess.run([sys.executable, "-c", code], env=plugin_env, capture_output=True, text=True)
    assert r.stdout.split("\n")[0] == ("('parity', {'bits': 7}) ('echo', {}) "
                                       "('varassign', {'format': 'code', 'depth': 2})"), r.stderr


def test_plugin_capacity_and_conflicts_are_checked(plugin_env):
    r = run(plugin_env, "generate", "--task", "parity-4", "--n", "100")
    assert r.returncode == 2 and "at most 16" in r.stderr, r.stderr  # 2**4 bit strings
    r = run(plugin_env, "generate", "--task", "parity-4", "-p", "bits=5")
    assert r.returncode == 2 and "fixes bits=4" in r.stderr and "parity-5" in r.stderr, r.stderr


def test_a_plugin_is_one_file_plus_templates(plugin_env):
    """No registry edit, no registration call: the module and its templates folder suffice."""
    site = Path(plugin_env["PYTHONPATH"].split(os.pathsep)[0])
    assert "register" not in (site / "rprim_parity.py").read_text()
    assert sorted(p.name for p in site.iterdir()) == [
        "rprim_echo.py", "rprim_parity.py", "rprim_plugins-0.1.dist-info", "templates"]
