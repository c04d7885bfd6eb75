"""Names, knobs, sizes and templates: what a task is called, what it accepts, what it holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rprim.primitives as P
from rprim.primitives.render import template_variables

CONFIGS = [
    ("varassign", {}), ("varassign", {"format": "code", "depth": 3, "width": 6}),
    ("varassign", {"depth": 4, "width": 8, "name_length": 2, "low": -50, "high": 50}),
    ("varassign", {"format": "math", "depth": 1, "low": 3, "high": 9}),
    ("copying", {}), ("copying", {"vocab": "words", "n": 12, "m": 4}), ("copying", {"n": 3, "m": 1}),
    ("psm", {}), ("psm", {"calc": True}), ("psm", {"low": 2, "high": 5}),
    ("psm", {"calc": True, "low": 0, "high": 3}),
    ("arithmetic", {}), ("arithmetic", {"context": 0}), ("arithmetic", {"context": 2, "low": 1, "high": 3}),
]


@pytest.mark.parametrize("family,knobs", CONFIGS, ids=lambda x: str(x))
def test_every_name_resolves_to_its_task(family, knobs):
    """Each family owns both directions: ``parse_name(task.name)`` gives the task back."""
    task = P.get(family, **knobs)
    fam, params = P.resolve(task.name)
    assert fam == family
    assert P.get(task.name).params == task.params
    assert P.families()[family].parse_name(task.name) == params


def test_suite_names_parse_to_the_suite_params():
    for name, (family, params) in P.SUITE.items():
        assert P.families()[family].parse_name(name) == params
        assert P.get(name).name == name


def test_other_families_do_not_claim_a_name():
    for family, cls in P.families().items():
        for name in ("varassign-code-d2", "copying-words", "psm-calc", "arithmetic-c3"):
            if not name.startswith(family):
                assert cls.parse_name(name) is None, (family, name)
    with pytest.raises(P.RprimError, match="did you mean"):
        P.resolve("varassign-code")


@pytest.mark.parametrize("family,knobs,needle", [
    ("copying", {"n": "abc"}, "n takes an integer"),
    ("copying", {"n": 12.5}, "n takes an integer"),
    ("varassign", {"width": 2.0}, "width takes an integer"),
    ("varassign", {"high": float("inf")}, "high takes an integer"),
    ("arithmetic", {"context": float("nan")}, "context takes an integer"),
    ("varassign", {"low": "abc"}, "low takes an integer"),
    ("psm", {"high": True}, "high takes an integer"),
    ("psm", {"calc": "maybe"}, "calc takes true or false"),
    ("psm", {"calc": 1}, "calc takes true or false"),
    ("varassign", {"format": 3}, "format takes text"),
    ("varassign", {"colour": "red"}, "no knob colour"),
])
def test_knobs_of_the_wrong_type_are_one_line_errors(family, knobs, needle):
    """Issue 10: these raised TypeError deep in a generator, or were kept as the wrong type."""
    with pytest.raises(P.RprimError) as e:
        P.get(family, **knobs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_knob_text_is_typed_like_the_command_line():
    assert P.get("varassign", depth="2").config.depth == 2
    assert P.get("psm", calc="true").name == "psm-calc"


@pytest.mark.parametrize("family,knobs,needle", [
    ("varassign", {"high": 10**12}, "must lie within"),
    ("varassign", {"low": -10**7, "high": 10**7}, "supports up to 1,000,000"),
    ("psm", {"low": -1}, "low >= 0"),
    ("psm", {"high": 10**7}, "supports up to"),
    ("arithmetic", {"high": 1000}, "supports up to 100"),
    ("arithmetic", {"context": 10**8}, "context must be 0..10,000"),
    ("arithmetic", {"low": 5, "high": 4}, "low <= high"),
])
def test_value_ranges_are_bounded(family, knobs, needle):
    """A range of 10**12 values would build 10**12 strings before failing: refuse it at once."""
    with pytest.raises(P.RprimError, match=re.escape(needle)):
        P.get(family, **knobs)


@pytest.mark.parametrize("name,knobs,total", [
    ("arithmetic", {"context": 1, "low": 0, "high": 2}, (4 * 9) ** 2),
    ("arithmetic", {"context": 0, "low": 0, "high": 1}, 16),
    ("varassign", {"width": 1, "depth": 1, "low": 0, "high": 2}, 3 * 26 * 25),
])
def test_capacity_bounds_what_each_split_really_holds(name, knobs, total):
    """Draw far more than the space holds: the distinct queries of the three splits add up to
    the family's count of the whole space, and none exceeds its split's bound."""
    task = P.get(name, **knobs)
    assert task.space()[0] * task.space()[1] == total
    found = 0
    for split in P.SPLITS:
        queries = {r["query"] for r in task.generate(20 * total, split=split, unique=False)}
        assert len(queries) <= task.capacity(split)
        found += len(queries)
    assert found == total


def test_more_than_a_split_holds_is_refused_before_any_work():
    """Issue 10: `--task psm --n 10**12` ran, writing gigabytes; the test split holds ~4.16M."""
    task = P.get("psm")
    assert 4_160_000 < task.capacity("test") < 4_180_000
    with pytest.raises(P.RprimError, match=r"holds at most 4,1\d\d,\d\d\d"):
        task.iter_chunks(10**12)  # raised on the call, before a single chunk
    assert len(list(task.iter_chunks(10**12, unique=False).__next__())) > 0  # duplicates allowed


def test_template_errors_name_the_variables_that_exist():
    P.register_template("varassign", "typo", "{% for l in lines %}{{ l.nme }}{% endfor %}{{ query }}")
    with pytest.raises(P.RprimError) as e:
        P.get("varassign", format="typo")
    assert "lines (a list; each item has name, value, level), query, depth, width" in str(e.value)
    P.register_template("varassign", "undef", "{{ question }}")
    with pytest.raises(P.RprimError, match="'question' is undefined.*it can use lines"):
        P.get("varassign", format="undef")
    P.register_template("varassign", "partial", "{{ query }}?")
    with pytest.raises(P.RprimError, match=r"leaves out per-example values \(lines\[0\]\.name"):
        P.get("varassign", format="partial")


def test_user_formats_never_borrow_a_built_in_name(tmp_path):
    """Issue 10: `--template ./code.j2` labelled the user's wording as `varassign-code-d0`."""
    with pytest.raises(P.RprimError, match="'code' is a built-in varassign format"):
        P.register_template("varassign", "code", "{% for l in lines %}{{ l.name }}{{ l.value }}{% endfor %}{{ query }}")
    with pytest.raises(P.RprimError, match="letters, digits and _"):
        P.register_template("varassign", "my-code", "{{ query }}")
    bad = tmp_path / "bin.j2"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(P.RprimError, match="UTF-8"):
        P.register_template("psm", "bin", bad)
    P.register_template("copying", "terse", "{{ sequence | join(',') }}|{{ span | join(',') }}|")
    assert P.get("copying", format="terse").name == "copying-random-fterse"  # not copying-random
    assert P.get("copying-random-fterse").config.format == "terse"
    assert P.get("copying").name == "copying-random"


README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_template_variable():
    """The README's table of template variables names what each family's templates may use."""
    text = README.read_text()
    table = text[text.index("| family | template variables |"):].split("\n\n")[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| (.*) \|$", table, re.M)}
    for family, cls in P.families().items():
        if family not in ("copying", "varassign", "psm", "arithmetic"):
            continue
        context = P.get(family).context()
        assert family in rows, f"README: no template-variable row for {family}"
        for key, value in context.items():
            assert f"`{key}`" in rows[family], (family, key)
            if isinstance(value, list) and value and isinstance(value[0], dict):
                for sub in value[0]:
                    assert f"`{sub}`" in rows[family], (family, key, sub)
        assert template_variables(context)  # and errors describe the same context
