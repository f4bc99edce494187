"""Hostile knowledge export files (issue 14, bad input): one SpecError naming the line,
never a traceback, bounded work."""

from __future__ import annotations

from pathlib import Path

import pytest

from medloop.core.errors import SpecError
from medloop.knowledge.transfer import MAX_LINE, read_export


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\n" + b"9" * 5000 + b"\n", ":2: not usable JSON (ValueError)"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", ":1: not usable JSON (RecursionError)"),
        (b'{"a": 1}\n\xff\xfe\n', "not UTF-8 text"),
        (b"x" * (MAX_LINE + 5), ":1: a line over 1,000,000 characters"),
        (b"{not json\n", ":1: not valid JSON"),
    ],
    ids=["huge-number", "deep-nesting", "binary", "huge-line", "broken"],
)
def test_hostile_export_lines_are_one_spec_error(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "claims.jsonl"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        list(read_export(path))
    assert needle in info.value.message and str(path) in info.value.message
