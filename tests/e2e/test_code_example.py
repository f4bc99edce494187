"""examples/code_hypotheses.yaml, CI-sized: the same file with a tiny dataset and short
runs, through the CLI with real sandboxed trainings. The offline planner proposes a
shipped post-processing move, it is smoke-tested, run on paired seeds, and its hypothesis
and the stored module name the same hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medloop.core.settings import Settings
from medloop.core.specs import load_campaign_spec
from medloop.core.store import open_store
from medloop.experiments.dataset import synth_phantom
from tests.e2e.test_cli_campaign import medloop

EXAMPLE = Path(__file__).parents[2] / "examples" / "code_hypotheses.yaml"


@pytest.mark.slow
def test_code_example_runs_tiny(tmp_path: Path) -> None:
    data = synth_phantom(tmp_path / "data", cases=12, seed=5, test_cases=4, size=32)
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["dataset"]["path"] = str(data)
    spec["baseline"].update({"iterations": 12, "batch_size": 4, "base_features": 8})
    spec["validation"].update({"seeds_per_arm": 2, "reproduction_seeds": 0})
    spec["budget"].update({"max_cycles": 1, "max_wall": "8m"})
    spec["sandbox"]["timeout"] = "3m"
    (tmp_path / "code.yaml").write_text(yaml.safe_dump(spec))
    medloop(tmp_path, "campaign", "run", "code.yaml")
    [campaign] = json.loads(medloop(tmp_path, "campaign", "list", "--json").stdout)
    store = open_store(Settings(workspace=tmp_path / ".medloop").store_url)
    hyps = store.cycles.hypotheses(campaign["id"])
    [code_hyp] = [h for h in hyps if h.changes[0].factor == "code_postprocess"]
    sha = str(code_hyp.changes[0].to_value)
    module, _ = store.code.get(sha)
    assert module.name in ("small_blob_removal", "largest_component") and module.trusted
    assert store.code.state(sha).smoke == "passed"
    assert module.name in code_hyp.statement
    treated = [store.trials.get(t) for t in code_hyp.treatment_trials]
    assert len(treated) == 2 and all(t.status == "succeeded" for t in treated)
    assert all(t.spec.config.model_dump()["code_postprocess"] == sha for t in treated)
    assert code_hyp.verdict in ("supported", "refuted", "inconclusive")


def test_every_example_campaign_file_parses() -> None:
    """Each shipped example is a valid campaign file (a typo in one fails here, not for a user)."""
    files = sorted(EXAMPLE.parent.glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        spec = load_campaign_spec(path, check_dataset=False)
        assert spec.name and spec.search_space, path.name


@pytest.mark.slow
def test_code_loss_example_runs_tiny(tmp_path: Path) -> None:
    """examples/code_loss.yaml, CI-sized: the planner proposes the shipped `cldice_loss`
    module at the `loss` point against the Dice-only baseline; the treated runs train with
    that module (its hash in their config) and the hypothesis ends with a verdict."""
    data = synth_phantom(tmp_path / "data", cases=12, seed=5, test_cases=4, size=32)
    spec = yaml.safe_load((EXAMPLE.parent / "code_loss.yaml").read_text())
    spec["dataset"]["path"] = str(data)
    spec["baseline"].update({"iterations": 12, "batch_size": 4, "base_features": 8})
    spec["validation"].update({"seeds_per_arm": 2, "reproduction_seeds": 0})
    spec["budget"].update({"max_wall": "8m"})
    spec["sandbox"]["timeout"] = "3m"
    (tmp_path / "code.yaml").write_text(yaml.safe_dump(spec))
    medloop(tmp_path, "campaign", "run", "code.yaml")
    [campaign] = json.loads(medloop(tmp_path, "campaign", "list", "--json").stdout)
    store = open_store(Settings(workspace=tmp_path / ".medloop").store_url)
    [hyp] = store.cycles.hypotheses(campaign["id"])
    assert hyp.changes[0].factor == "code_loss"
    module, _ = store.code.get(str(hyp.changes[0].to_value))
    assert module.name == "cldice_loss" and module.trusted
    treated = [store.trials.get(t) for t in hyp.treatment_trials]
    assert len(treated) == 2 and all(t.status == "succeeded" for t in treated)
    assert all(t.spec.config.model_dump()["code_loss"] == module.sha256 for t in treated)
    assert hyp.verdict in ("supported", "refuted", "inconclusive")
