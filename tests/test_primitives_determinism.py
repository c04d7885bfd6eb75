"""Same arguments, same bytes: across processes, hash seeds, and the frozen suite files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rprim.primitives as P

ARGS = [["--task", "varassign", "--depth", "2", "--format", "code", "--n", "300"],
        ["--task", "copying-words", "--n", "300", "--shots", "3", "--split", "train", "--seed", "9"],
        ["--task", "psm-calc", "--n", "300", "--shots", "2", "--per-query-shots"]]


def _run(args: list[str], hashseed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run([sys.executable, "-m", "rprim", "generate", *args], env=env,
                         capture_output=True, check=True)
    return out.stdout


@pytest.mark.parametrize("args", ARGS, ids=lambda a: a[1])
def test_byte_identical_across_processes_and_hash_seeds(args):
    a, b = _run(args, "0"), _run(args, "12345")
    assert a == b and len(a.splitlines()) == 300
    assert a == _run(args, "random")


def test_cli_and_library_agree():
    out = _run(ARGS[0], "1")
    lib = P.get("varassign", depth=2, format="code").iter_lines(300)
    assert out.decode() == "".join(line + "\n" for line in lib)


def test_golden_fingerprints():
    """Fixed digests of small outputs: data may only change with a GENERATOR_VERSION bump.

    (The frozen suite test below covers every suite task; these cover shots and splits.)
    """
    digest = lambda name, **kw: hashlib.sha256(  # noqa: E731
        "\n".join(P.get(name).iter_lines(100, **kw)).encode()).hexdigest()[:16]
    got = {
        "varassign-code-d2/train/5shot": digest("varassign-code-d2", split="train", shots=5),
        "copying-random/fewshot/seed3": digest("copying-random", split="fewshot", seed=3),
        "psm/test/perquery": digest("psm", shots=2, per_query_shots=True),
    }
    golden = json.loads((Path(__file__).parent / "golden.json").read_text())
    assert golden["generator_version"] == P.GENERATOR_VERSION, "bump golden.json with the version"
    assert got == golden["digests"]


def test_frozen_suite_regenerates_byte_for_byte(tmp_path):
    manifest = P.write_suite(tmp_path)
    frozen_dir = P.suite_dir()
    frozen = json.loads((frozen_dir / "manifest.json").read_text())
    assert frozen["generator_version"] == P.GENERATOR_VERSION, \
        "the frozen suite was written by another generator version: run `rprim suite --out data/suite`"
    assert [e["task"] for e in frozen["tasks"]] == P.suite_names()
    for entry, fresh in zip(frozen["tasks"], manifest["tasks"]):
        assert entry == fresh
        assert (frozen_dir / entry["file"]).read_bytes() == (tmp_path / fresh["file"]).read_bytes(), \
            f"{entry['task']} data changed: bump GENERATOR_VERSION and rewrite data/suite"
        assert entry["n"] == 1000 and entry["seed"] == 0


def test_load_suite_verifies_hashes(tmp_path):
    data = P.load_suite(["varassign-code-d0", "psm"])
    assert len(data["psm"]) == 1000 and data["psm"][0]["split"] == "test"
    P.write_suite(tmp_path, n=20, tasks=["psm"])
    path = tmp_path / "psm.jsonl"
    path.write_text(path.read_text().replace('"seed":0', '"seed":1', 1))
    with pytest.raises(P.RprimError, match="does not match its manifest"):
        P.load_suite(["psm"], folder=tmp_path)
    with pytest.raises(P.RprimError, match="not in the frozen suite"):
        P.load_suite(["varassign-code-d5"])
