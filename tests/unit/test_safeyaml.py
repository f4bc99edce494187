"""The YAML reader for user files: hostile documents are refused fast, with the line."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
import yaml

from medloop.core import safeyaml
from medloop.core.errors import SpecError


def billion_laughs(levels: int = 9) -> str:
    """~400 bytes that PyYAML expands to 9**levels strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_billion_laughs_is_refused_before_expansion() -> None:
    text = billion_laughs()
    assert len(text) < 500
    before = cpu_seconds()
    with pytest.raises(SpecError, match=r"line 1: YAML anchors and aliases"):
        safeyaml.parse(text, source="lol.yaml")
    assert cpu_seconds() - before < 5  # generous: a refusal is milliseconds


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: &x 1\n", "anchors and aliases"),
        ("a: 1\nb: *x\n", "line 2"),  # an undefined alias is still refused (or a parse error)
        ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a' (first on line 1)"),
        ("budget:\n  max_trials: 3\n  max_trials: 4\n", "duplicate key 'budget.max_trials'"),
        ("x: " + "[" * 40 + "]" * 40, "nested deeper than"),
        ("a: " + "9" * 5000, "cannot be read"),
        ("a: 1\n---\na: 2\n", "line 2: more than one YAML document"),
        ("a: [1, 2\n", "not valid YAML"),
        ("a: [" + "1," * 25_000 + "1]", "more than 20,000 values"),
    ],
)
def test_hostile_documents_are_refused_with_a_line(text: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        safeyaml.parse(text, source="f.yaml")
    assert needle in str(info.value) and str(info.value).startswith("f.yaml")


def test_size_is_capped_before_the_whole_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("goal: " + "x" * (safeyaml.MAX_BYTES + 10) + "\n")
    with pytest.raises(SpecError, match="at most 1,000,000"):
        safeyaml.read(path)
    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(SpecError, match="not a UTF-8 text file"):
        safeyaml.read(tmp_path / "bin.yaml")


def test_plain_documents_keep_their_values_and_key_lines() -> None:
    doc = safeyaml.parse("name: x\nbudget:\n  max_trials: 4\nspace: [1, {b: 2}]\n", source="f")
    assert doc.data == {"name": "x", "budget": {"max_trials": 4}, "space": [1, {"b": 2}]}
    assert doc.lines["budget.max_trials"] == 3 and doc.line_for("budget.max_trials.deeper") == 3
    assert doc.data == yaml.safe_load("name: x\nbudget:\n  max_trials: 4\nspace: [1, {b: 2}]\n")
    assert safeyaml.parse("", source="f").data is None
    assert safeyaml.scalar("12") == 12 and safeyaml.scalar("8m") == "8m" and safeyaml.scalar("[") == "["


def test_a_large_plain_file_under_the_cap_parses_in_bounded_cpu() -> None:
    text = "goal: " + "x" * 900_000 + "\n" + "".join(f"k{i}: [1, 2, {{a: b}}]\n" for i in range(2000))
    start = time.process_time()
    doc = safeyaml.parse(text, source="f")
    assert len(doc.data) == 2001
    assert time.process_time() - start < 5  # generous bound; typically well under 0.5 s
