"""Bad input for the data commands (generate, tasks, suite, export) and the CLI itself.

Run by tests/test_adversarial.py: each case must exit 2 with one `rprim: error:` line holding
the substring, and leave {tmp} and {fixtures} exactly as they were.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GEN = ["generate", "--task"]

CASES = [
    # -p knobs of the wrong type (issue 10: TypeError, or kept as the wrong type)
    ("gen-n-abc", [*GEN, "copying", "-p", "n=abc"], "n takes an integer"),
    ("gen-n-float", [*GEN, "copying", "-p", "n=12.5"], "n takes an integer"),
    ("gen-width-float", [*GEN, "varassign", "-p", "width=2.0"], "width takes an integer"),
    ("gen-high-inf", [*GEN, "varassign", "-p", "high=inf"], "high takes an integer"),
    ("gen-context-nan", [*GEN, "arithmetic", "-p", "context=nan"], "context takes an integer"),
    ("gen-low-abc", [*GEN, "varassign", "-p", "low=abc"], "low takes an integer"),
    ("gen-psm-high-true", [*GEN, "psm", "-p", "high=true"], "high takes an integer"),
    ("gen-calc-maybe", [*GEN, "psm", "-p", "calc=maybe"], "calc takes true or false"),
    ("gen-knob-unknown", [*GEN, "varassign", "-p", "colour=red"], "no knob colour"),
    ("gen-knob-no-equals", [*GEN, "varassign", "-p", "width"], "is not KEY=VALUE"),
    ("gen-knob-twice", [*GEN, "copying", "-p", "n=4", "-p", "n=5"], "contradict each other"),
    ("gen-depth-on-psm", [*GEN, "psm", "--depth", "2"], "psm has no knob depth"),
    # options that contradict the task name or each other (issue 9: silently preferred)
    ("gen-name-vs-depth", [*GEN, "varassign-code-d2", "--depth", "1"], "already fixes depth=2"),
    ("gen-name-vs-format", [*GEN, "varassign-code-d2", "--format", "math"], "varassign-math-d2"),
    ("gen-name-vs-p", [*GEN, "psm-calc", "-p", "calc=false"], "already fixes calc=True"),
    ("gen-flag-vs-p", [*GEN, "varassign", "--depth", "1", "-p", "depth=2"], "contradicts -p depth=2"),
    ("gen-template-vs-format", [*GEN, "varassign", "--format", "basic", "--template", "{fixtures}/mine.j2"],
     "contradicts --format basic"),
    # sizes that can never be met, or would blow up memory before failing
    ("gen-huge-n", [*GEN, "psm", "--n", "1000000000000"], "holds at most 4,1"),
    ("gen-huge-shots", [*GEN, "arithmetic-c0-v0_1", "--n", "1", "--shots", "100"], "fewshot split holds at most"),
    ("gen-huge-range", [*GEN, "varassign", "-p", "high=1000000000000"], "must lie within"),
    ("gen-arith-range", [*GEN, "arithmetic", "-p", "high=1000"], "supports up to 100"),
    ("gen-huge-context", [*GEN, "arithmetic", "-p", "context=100000000"], "context must be"),
    ("gen-psm-negative", [*GEN, "psm", "-p", "low=-1"], "low >= 0"),
    ("gen-copying-m", [*GEN, "copying", "-p", "m=10"], "1 <= m < n"),
    ("gen-depth-names", [*GEN, "varassign", "--depth", "5"], "name_length=2"),
    ("gen-depth-negative", [*GEN, "varassign", "--depth", "-1"], "depth must be >= 0"),
    ("gen-n-zero", [*GEN, "psm", "--n", "0"], "n must be a positive"),
    ("gen-n-negative", [*GEN, "psm", "--n", "-5", "--out", "{tmp}/x.jsonl"], "n must be a positive"),
    ("gen-n-text", [*GEN, "psm", "--n", "abc"], "is not a valid integer"),
    ("gen-shots-negative", [*GEN, "psm", "--shots", "-2"], "shots must be >= 0"),
    ("gen-split", [*GEN, "psm", "--split", "dev"], "unknown split 'dev'"),
    ("gen-unknown-task", [*GEN, "varasign"], "did you mean varassign"),
    ("gen-empty-task", [*GEN, ""], "unknown task ''"),
    ("gen-name-huge-depth", [*GEN, "varassign-code-d99999999999"], "distinct names"),
    ("gen-name-huge-width", [*GEN, "varassign-basic-d0-w100000"], "fewer than width=100000"),
    ("gen-name-huge-n", [*GEN, "copying-random-n100000-m5"], "exceeds the random vocabulary"),
    ("gen-n-huge-int", [*GEN, "varassign", "--n", "99999999999999999999999999999999999999999999"], "holds at most"),
    ("gen-unknown-format", [*GEN, "varassign", "--format", "yaml"], "unknown format 'yaml'"),
    ("gen-no-task", ["generate"], "Missing option '--task'"),
    ("gen-unknown-option", [*GEN, "psm", "--bogus"], "No such option"),
    # outputs: refused before any work, nothing half written
    ("gen-out-proc", [*GEN, "psm", "--out", "/proc/rprim.jsonl"], "not writable"),
    ("gen-out-no-folder", [*GEN, "psm", "--out", "{tmp}/no/such/x.jsonl"], "does not exist"),
    ("gen-out-is-folder", [*GEN, "psm", "--out", "{fixtures}/user"], "is a folder"),
    ("gen-out-suffix", [*GEN, "psm", "--out", "{tmp}/x.csv"], "use a .jsonl or .parquet"),
    ("gen-out-device", [*GEN, "psm", "--out", "/dev/null"], "not a regular file"),
    # user templates (issue 9: name the variables; issue 10: never a built-in's name)
    ("gen-template-missing", [*GEN, "varassign", "--template", "{tmp}/nope.j2"], "does not exist"),
    ("gen-template-folder", [*GEN, "varassign", "--template", "{fixtures}/user"], "is a directory"),
    ("gen-template-typo", [*GEN, "varassign", "--template", "{fixtures}/typo.j2"],
     "it can use lines (a list; each item has name, value, level), query, depth, width"),
    ("gen-template-builtin", [*GEN, "varassign", "--template", "{fixtures}/code.j2"],
     "'code' is a built-in varassign format"),
    ("gen-template-name", [*GEN, "varassign", "--template", "{fixtures}/bad-name.j2"], "letters, digits and _"),
    ("gen-template-syntax", [*GEN, "psm", "--template", "{fixtures}/broken.j2"], "does not parse"),
    ("gen-template-binary", [*GEN, "psm", "--template", "{fixtures}/binary.j2"], "UTF-8"),
    ("gen-template-partial", [*GEN, "varassign", "--template", "{fixtures}/partial.j2"],
     "leaves out per-example values"),
    # the command line itself
    ("cli-unknown-command", ["generat"], "No such command 'generat'"),
    ("cli-unknown-global-option", ["--bogus"], "No such option"),
    ("tasks-extra-argument", ["tasks", "extra"], "unexpected extra argument"),
    # suite
    ("suite-n-zero", ["suite", "--out", "{tmp}/s", "--n", "0"], "n must be a positive"),
    ("suite-huge-n", ["suite", "--out", "{tmp}/a/b", "--n", "10000000"], "holds at most"),
    ("suite-out-file", ["suite", "--out", "{fixtures}/file.txt"], "is a file"),
    ("suite-out-user-folder", ["suite", "--out", "{fixtures}/user"], "holds no rprim suite"),
    ("suite-out-proc", ["suite", "--out", "/proc/rprim-suite"], "not writable"),
    ("suite-show-negative", ["suite", "--out", "{tmp}/s", "--show", "-1"], "--show"),
    ("suite-no-out", ["suite"], "Missing option '--out'"),
    ("suite-old-kept", ["suite", "--out", "{fixtures}/suite_old", "--n", "0"], "n must be a positive"),
    # export (issue 10: deleted the folder with the user's files; wrote num_fewshot: -3)
    ("export-shots-negative", ["export", "lm-eval", "--out", "{tmp}/lm", "--shots", "-3"], "--shots"),
    ("export-user-folder", ["export", "lm-eval", "--out", "{fixtures}/user"], "holds no rprim lm-eval-export"),
    ("export-dot-user-folder", ["export", "parquet", "--out", "{fixtures}/user/."], "holds no rprim parquet-export"),
    ("export-over-a-suite", ["export", "lm-eval", "--out", "{fixtures}/suite_old"], "holds no rprim lm-eval-export"),
    ("export-out-file", ["export", "lm-eval", "--out", "{fixtures}/file.txt"], "is a file"),
    ("export-out-proc", ["export", "lm-eval", "--out", "/proc/rprim-lm"], "not writable"),
    ("export-unknown-task", ["export", "parquet", "--out", "{tmp}/x", "--tasks", "nope"], "unknown task"),
    ("export-empty-tasks", ["export", "lm-eval", "--out", "{tmp}/x", "--tasks", ","], "task list is empty"),
    ("export-n-zero", ["export", "lm-eval", "--out", "{tmp}/x", "--n", "0"], "must be a positive"),
    ("export-n-beyond-suite", ["export", "lm-eval", "--out", "{tmp}/x", "--tasks", "psm", "--n", "5000"],
     "frozen suite has 1000"),
    ("export-too-few-queries", ["export", "lm-eval", "--out", "{tmp}/x", "--tasks", "arithmetic-c0-v0_1"],
     "holds at most"),
    ("export-unknown-format", ["export", "csv"], "No such command 'csv'"),
    # a disk too small for the asked records: refused before anything is written
    ("gen-n-beyond-the-disk", ["generate", "--task", "varassign-code-d2", "--n", "1000000000000000",
                               "--out", "{tmp}/x.jsonl"], "needs about"),
    ("gen-n-beyond-the-disk-parquet", ["generate", "--task", "psm", "--n", "1000000000000000", "--allow-duplicates",
                                       "--out", "{tmp}/x.parquet"], "needs about"),
]


def setup(fixtures: Path) -> None:
    """A user's folder, a plain file, templates of every kind of mistake, an earlier suite."""
    (fixtures / "user").mkdir()
    (fixtures / "user" / "thesis.tex").write_text("my thesis\n")
    (fixtures / "file.txt").write_text("a file\n")
    (fixtures / "typo.j2").write_text("{% for line in lines %}{{ line.nme }}={{ line.value }}\n{% endfor %}{{ query }}")
    (fixtures / "code.j2").write_text("{% for l in lines %}{{ l.name }}:={{ l.value }};{% endfor %}{{ query }}?")
    (fixtures / "mine.j2").write_text("{% for l in lines %}{{ l.name }}:={{ l.value }};{% endfor %}{{ query }}?")
    (fixtures / "bad-name.j2").write_text("{% for l in lines %}{{ l.name }}{{ l.value }}{% endfor %}{{ query }}")
    (fixtures / "broken.j2").write_text("{% for c in constants %}{{ c.name }")
    (fixtures / "binary.j2").write_bytes(b"\xff\xfe\x00\x81 not text")
    (fixtures / "partial.j2").write_text("What is {{ query }}?")
    subprocess.run([sys.executable, "-m", "rprim", "suite", "--out", str(fixtures / "suite_old"), "--n", "2"],
                   check=True, capture_output=True)
