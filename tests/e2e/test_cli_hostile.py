"""Hostile campaign files through the CLI (issue 14, items 14-15): one line naming the file
and the line or key, exit 2, no traceback, nothing written, bounded CPU."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest

from medloop.experiments.dataset import synth_phantom
from tests.e2e.test_cli_campaign import TINY, medloop
from tests.unit.test_safeyaml import billion_laughs


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t + billion_laughs(), "anchors and aliases"),
        (
            lambda t: t.replace("budget: {max_cycles: 1}", "budget: &b {max_cycles: 1}\nb2: *b"),
            "line 8: YAML anchors",
        ),
        (lambda t: t + "name: again\n", "line 12: duplicate key 'name' (first on line 1)"),
        (lambda t: t.replace("max_cycles: 1", "max_cycles: 1, max_trials: true"), "budget.max_trials"),
        (lambda t: t.replace("max_cycles: 1", "max_cycles: 100000000"), "budget.max_cycles"),
        (lambda t: t.replace("goal: Raise", "goal: " + "x" * 5000 + " Raise"), "goal: String should have"),
        (lambda t: t.replace("goal: Raise", "goal: " + "x" * 50_000_000 + " Raise"), "at most 1,000,000"),
    ],
    ids=["billion-laughs", "alias", "duplicate-key", "bool-count", "huge-count", "long-goal", "50MB-goal"],
)
def test_hostile_campaign_file_is_refused_fast(tmp_path: Path, edit: Any, needle: str) -> None:
    synth_phantom(tmp_path / "data", cases=4, seed=1, test_cases=0)
    (tmp_path / "bad.yaml").write_text(edit(TINY).replace("DATA", str(tmp_path / "data")))
    before = _children_cpu()
    out = medloop(tmp_path, "campaign", "run", "bad.yaml", check=False)
    assert _children_cpu() - before < 30  # generous (interpreter start included); main: minutes
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert needle in lines[0] and "bad.yaml" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / ".medloop").exists(), "a refused campaign file must not create a workspace"
