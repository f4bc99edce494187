"""Code hypotheses in whole campaigns (replay tables: real graph, planner and statistics,
no sandbox): the offline planner proposes shipped code moves, a code move is certified
like any other change (paired arms, seeds, reproduction with the same hash), its claim
names the hash, quarantining the module quarantines the claim, and a module a person
adds is tested first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medloop.agents.code_moves import campaign_modules
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.code import source_sha256
from medloop.core.specs import CampaignSpec, parse_campaign_spec
from medloop.core.store import SqlStore, open_store
from medloop.engine.code import library, register
from medloop.engine.replay import ReplayTrials, save_table, synthetic_table
from medloop.knowledge.quarantine import quarantine
from tests.fakes import FakeKnowledge

SBR = source_sha256(library()["small_blob_removal"])
LCC = source_sha256(library()["largest_component"])
HUMAN = '''"""Keep the prediction as it is (a person's module)."""
import numpy as np

EXTENSION_POINT = "postprocess"


def postprocess(label_map, spacing, labels):
    return np.asarray(label_map)
'''
LRS: list[Any] = [0.001, 0.003]


def _table(path: Path) -> Path:
    space: dict[str, list[Any]] = {"lr": LRS, "code_postprocess": ["none", SBR, LCC, source_sha256(HUMAN)]}

    def effect(cfg: dict[str, Any]) -> float:  # blob removal truly helps by 0.04; nothing else does
        return 0.04 * (cfg["code_postprocess"] == SBR)

    save_table(synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=3), path)
    return path


def _spec(table: Path, cycles: int = 2) -> CampaignSpec:
    return parse_campaign_spec(
        {
            "name": "code-replay",
            "goal": "Raise Dice with code moves",
            "dataset": {"path": str(table.parent)},
            "baseline": {"lr": 0.001},
            "search_space": {"lr": LRS},
            "validation": {"seeds_per_arm": 3, "reproduction_seeds": 3, "min_effect": 0.005},
            "budget": {"max_cycles": cycles, "patience": 3},
            "executor": {"kind": "table", "table": str(table)},
            "planner": {"hypotheses_per_cycle": 2},
            "code": {"points": ["postprocess"], "moves": ["small_blob_removal", "largest_component"]},
        },
        source="test",
        check_dataset=True,
    )


def _services(tmp_path: Path, store: SqlStore) -> CampaignServices:
    return CampaignServices(
        store=store,
        knowledge=FakeKnowledge(store),
        make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=spec.executor.table),  # type: ignore[arg-type]
        make_planner=lambda spec: OfflinePlanner(),
        checkpoints=local_checkpoints(tmp_path / "ckpt.sqlite"),
    )


def test_a_shipped_code_move_is_certified_and_its_claim_follows_the_module(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    runner = CampaignRunner(_services(tmp_path, store))
    done = runner.run(runner.create(_spec(_table(tmp_path / "table.json")), owner="alice").id)
    hyps = store.cycles.hypotheses(done.id)
    code_hyps = [h for h in hyps if any(c.factor == "code_postprocess" for c in h.changes)]
    assert code_hyps, [h.statement for h in hyps]
    blob = next(h for h in code_hyps if (h.changes[0].to_value == SBR and h.verdict == "supported"))
    assert "small_blob_removal" in blob.statement and SBR not in blob.statement
    # certified like any other change: paired seeds, reproduced with fresh seeds, same hash
    assert blob.reproduction == "agreed" and len(blob.treatment_trials) == 3
    for tid in blob.treatment_trials + blob.reproduction_treatment:
        assert store.trials.get(tid).spec.config.model_dump()["code_postprocess"] == SBR
    for tid in blob.control_trials:
        assert store.trials.get(tid).spec.config.model_dump()["code_postprocess"] == "none"
    assert done.incumbent["code_postprocess"] == SBR
    claim = store.claims.get(blob.claim_id or "")
    assert claim.tier == "reproduced"
    assert any(e.kind == "source" and e.ref_id == f"code:{SBR}" for e in store.evidence.list(claim.id))
    # quarantining the module (by its hash) quarantines the claim and takes it off the menu
    q = quarantine(store, SBR, why="found a bug in it", actor="bob", role="reviewer")
    assert q.target_type == "code" and claim.id in q.members
    assert store.claims.get(claim.id).tier == "quarantined"
    assert SBR not in {m.sha256 for m in campaign_modules(store, done.spec, done.id)}


def test_a_module_a_person_adds_is_tested_first(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    runner = CampaignRunner(_services(tmp_path, store))
    campaign = runner.create(_spec(_table(tmp_path / "table.json"), cycles=1), owner="alice")
    module = register(store, HUMAN, name="identity", author="alice", campaign_id=campaign.id)
    assert module.author_kind == "human" and not module.trusted and "+EXTENSION_POINT" in module.diff
    runner.run(campaign.id)
    first = store.cycles.hypotheses(campaign.id, 1)[0]
    assert [(c.factor, c.to_value) for c in first.changes] == [("code_postprocess", module.sha256)]
    assert first.source == "user" and "identity" in first.statement
