"""A campaign whose policy requires human review pauses before a reproduced claim steers
planning, refuses the owner's own validation, and resumes on another reviewer's decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.engine.replay import ReplayTrials
from medloop.knowledge.factory import make_knowledge_base
from tests.unit.agents.test_replay_campaign import make_spec, table  # noqa: F401 - fixture


def test_review_interrupt_and_decisions(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store = open_store(tmp_path / "m.db")
    settings = Settings(workspace=tmp_path, embedder="hash", vector_index="memory")
    events: list[tuple[str, dict[str, Any]]] = []
    services = CampaignServices(
        store=store,
        knowledge=make_knowledge_base(settings, store),
        make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=spec.executor.table),  # type: ignore[arg-type]
        make_planner=lambda spec: OfflinePlanner(),
        checkpoints=local_checkpoints(tmp_path / "ck.sqlite"),
    )
    runner = CampaignRunner(services, on_event=lambda k, p: events.append((k, p)))
    spec = make_spec(table)
    spec = spec.model_copy(
        update={"validation": spec.validation.model_copy(update={"human_review": True, "reproduce": "best"})}
    )
    campaign = runner.run(runner.create(spec, owner="alice").id)

    assert campaign.status == "paused" and campaign.summary["waiting_for"] == "review"
    assert campaign.incumbent == campaign.baseline  # nothing promoted before review
    pending = runner.pending_interrupt(campaign.id)
    assert pending is not None and pending["claims"]
    # Every supported change is reproduced; the largest is the one that moves the incumbent.
    claim_id = max(
        (c for c in pending["claims"] if store.claims.get(c).tier == "reproduced"),
        key=lambda c: store.claims.get(c).effect.estimate,  # type: ignore[union-attr]
    )

    # The campaign owner cannot validate their own claim: refused, the campaign keeps waiting.
    decision = {"action": "validate", "reviewer": "alice", "reason": "looks right"}
    campaign = runner.review(campaign.id, {claim_id: decision})
    assert store.claims.get(claim_id).tier == "reproduced"
    assert any(k == "review_refused" and p["claim"] == claim_id for k, p in events)
    assert campaign.status == "paused" and runner.pending_interrupt(campaign.id) is not None

    # Another reviewer validates: the claim moves, the incumbent follows, the run goes on.
    decision = {"action": "validate", "reviewer": "bob", "reason": "checked the per-case table"}
    after = runner.review(campaign.id, {claim_id: decision})
    assert store.claims.get(claim_id).tier == "validated"
    assert after.incumbent != after.baseline
    audit = [e for e in store.audit.list(object_id=claim_id) if e.detail.get("to") == "validated"]
    assert audit and audit[0].actor == "bob"
