"""A primitive from another package appears in the registry and the CLI via entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def test_entry_point_plugin(tmp_path):
    pkg = tmp_path / "rprim_parity"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import numpy as np
        from rprim.primitives import Primitive

        @dataclass(frozen=True)
        class ParityConfig:
            bits: int = 10
            format: str = "plain"

        class Parity(Primitive):
            family = "parity"
            Config = ParityConfig

            @property
            def name(self):
                return f"parity-{self.config.bits}"

            def context(self):
                from rprim.primitives.render import Slot
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
    '''))
    (pkg / "plain.j2").write_text("Parity of {{ bits | join('') }}:")
    (pkg / "__init__.py").write_text((pkg / "__init__.py").read_text() + textwrap.dedent('''
        from pathlib import Path
        from rprim.primitives import register_template
        register_template("parity", "plain", Path(__file__).with_name("plain.j2"))
    '''))
    dist = tmp_path / "rprim_parity-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rprim-parity\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rprim.primitives]\nparity = rprim_parity:Parity\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    tasks = subprocess.run([sys.executable, "-m", "rprim", "tasks"], env=env, capture_output=True, text=True)
    assert tasks.returncode == 0, tasks.stderr
    assert "parity" in tasks.stdout
    gen = subprocess.run([sys.executable, "-m", "rprim", "generate", "--task", "parity", "--n", "20"],
                         env=env, capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    recs = [json.loads(line) for line in gen.stdout.splitlines()]
    assert len(recs) == 20 and recs[0]["task"] == "parity-10"
    for r in recs:
        bits = r["query"].removeprefix("Parity of ").removesuffix(":")
        assert r["target"] == str(bits.count("1") % 2)
