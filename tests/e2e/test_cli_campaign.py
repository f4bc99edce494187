"""The walking skeleton through the CLI, as a researcher uses it: a real (tiny) campaign
twice, the JSON views, and malformed campaign files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medloop.experiments.dataset import synth_phantom

TINY = """\
name: tiny
goal: Raise Dice on a tiny phantom.
dataset: {path: DATA, eval_fraction: 0.4}
baseline: {loss: dice, lr: 0.001, iterations: 40, batch_size: 4, base_features: 8, depth: 3}
search_space:
  loss: [dice, dicece]
validation: {seeds_per_arm: 2, reproduction_seeds: 3, min_effect: 0.0}
budget: {max_cycles: 1}
executor: {kind: local, slots: 2}
sandbox: {timeout: 5m}
planner: {hypotheses_per_cycle: 1}
"""


def medloop(ws: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEDLOOP_WORKSPACE": str(ws / ".medloop"),
        "MEDLOOP_EMBEDDER": "hash",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "medloop", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=600
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"medloop {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return out


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    synth_phantom(tmp_path / "data", cases=16, seed=5, test_cases=6)
    (tmp_path / "tiny.yaml").write_text(TINY.replace("DATA", str(tmp_path / "data")))
    return tmp_path


@pytest.mark.slow
def test_campaign_twice_and_json_views(tiny: Path) -> None:
    first = medloop(tiny, "campaign", "run", "tiny.yaml")
    assert "incumbent vs baseline" in first.stdout and "cycle 1" in first.stdout
    campaigns = json.loads(medloop(tiny, "campaign", "list", "--json").stdout)
    assert [c["status"] for c in campaigns] == ["completed"]
    shown = json.loads(medloop(tiny, "campaign", "show", campaigns[0]["id"], "--json").stdout)
    assert len(shown["trials"]) >= 4 and shown["hypotheses"][0]["verdict"] in (
        "supported",
        "refuted",
        "inconclusive",
    )
    assert set(shown["trials"][0]) == {"id", "hypothesis", "arm", "seed", "status", "objective", "cause"}

    claims: list[dict[str, Any]] = json.loads(medloop(tiny, "claims", "list", "--json").stdout)["claims"]
    assert claims
    detail = json.loads(medloop(tiny, "claims", "show", claims[0]["id"], "--json").stdout)
    text = json.dumps(detail)
    for needle in ("seed", "dataset_checksum", "code_version", "spec_hash"):
        assert needle in text, f"claim evidence lacks {needle}"

    second = medloop(tiny, "campaign", "run", "tiny.yaml")
    first_claim_ids = {c["id"] for c in claims}
    assert any(cid in second.stdout for cid in first_claim_ids), (
        "second plan does not name the first's claims"
    )
    campaigns = json.loads(medloop(tiny, "campaign", "list", "--json").stdout)
    shown = json.loads(medloop(tiny, "campaign", "show", campaigns[0]["id"], "--json").stdout)
    assert set(shown["claims_used"]) & first_claim_ids


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            lambda t: t.replace("budget: {max_cycles: 1}", "budget: {max_cycles: 1, max_trails: 3}"),
            "budget.max_trails: unknown key",
        ),
        (lambda t: t.replace("max_cycles: 1", "max_cycles: many"), "budget.max_cycles"),
        (lambda t: t.replace("path: DATA", "path: /nonexistent/dataset"), "dataset.path"),
        (lambda t: t.replace("loss: [dice, dicece]", "losss: [dice, dicece]"), "losss"),
        (lambda t: t + "\n  - : [\n", "not valid YAML"),
    ],
    ids=["unknown-key", "wrong-type", "missing-dataset", "unknown-factor", "bad-yaml"],
)
def test_malformed_campaign_file_is_one_line_and_writes_nothing(
    tmp_path: Path, edit: Any, needle: str
) -> None:
    synth_phantom(tmp_path / "data", cases=4, seed=1, test_cases=0)
    (tmp_path / "bad.yaml").write_text(edit(TINY).replace("DATA", str(tmp_path / "data")))
    out = medloop(tmp_path, "campaign", "run", "bad.yaml", check=False)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert needle in lines[0] and "bad.yaml" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / ".medloop").exists(), "a rejected campaign file must not create a workspace"


def test_broken_dataset_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = synth_phantom(tmp_path / "data", cases=4, seed=1, test_cases=0)
    (data / "dataset.json").write_text('{"labels": {"background": 0}}')
    (tmp_path / "c.yaml").write_text(TINY.replace("DATA", str(data)))
    out = medloop(tmp_path, "campaign", "run", "c.yaml", check=False)
    assert out.returncode == 2 and "dataset.json" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / ".medloop").exists()
