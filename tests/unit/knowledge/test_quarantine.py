"""Quarantine: every derived claim demoted at once, none else; out of planning; undoable; audited."""

from __future__ import annotations

import time

import pytest

from medloop.core.errors import NotFoundError, TrustError
from medloop.core.records import Evidence
from medloop.core.store import SqlStore
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.service import KnowledgeService
from tests.unit.knowledge.builders import add_campaign, add_trial, make_claim, trial_evidence


@pytest.fixture
def world(kb: KnowledgeService, store: SqlStore) -> KnowledgeService:
    """cmp_a ran trl_bad and trl_ok; cmp_b reused trl_bad. clm_meta derives from clm_a1."""
    add_campaign(store, "cmp_a", "alice")
    add_campaign(store, "cmp_b", "bob")
    add_trial(store, "trl_bad", "cmp_a", seed=1)
    add_trial(store, "trl_ok", "cmp_a", seed=2)
    kb.add_claim(
        make_claim("clm_a1", campaign="cmp_a"), trial_evidence("clm_a1", "trl_bad", "trl_ok"), actor="agent"
    )
    kb.add_claim(
        make_claim("clm_a2", campaign="cmp_a", to="dicefocal"),
        trial_evidence("clm_a2", "trl_ok"),
        actor="agent",
    )
    kb.add_claim(
        make_claim("clm_b1", campaign="cmp_b", factor="lr", frm=0.001, to=0.01),
        trial_evidence("clm_b1", "trl_bad"),
        actor="agent",
    )
    derived = [Evidence(claim_id="clm_meta", kind="claim", ref_id="clm_a1", role="derived_from")]
    kb.add_claim(make_claim("clm_meta", factor="lr", frm=0.01, to=0.1), derived, actor="agent")
    kb.add_claim(make_claim("clm_free", to="dicefocal"), [], actor="agent")
    return kb


def test_trial_quarantine_demotes_exactly_its_descendants(world: KnowledgeService, store: SqlStore) -> None:
    before = store.claims.tiers()
    q = world.quarantine("trl_bad", why="tampered metrics", actor="carol", role="reviewer")
    assert q.target_type == "trial" and set(q.members) == {"clm_a1", "clm_b1", "clm_meta"}
    after = store.claims.tiers()
    assert {c for c, t in after.items() if t == "quarantined"} == {"clm_a1", "clm_b1", "clm_meta"}
    assert {c: after[c] for c in ("clm_a2", "clm_free")} == {c: before[c] for c in ("clm_a2", "clm_free")}
    res = world.retrieve(RetrievalQuery(text="loss lr dice", factors=["loss", "lr"], k=20))
    assert {r.claim.id for r in res} == {"clm_a2", "clm_free"}
    actions = [e.action for e in store.audit.list(object_id="clm_a1")]
    assert actions[-1] == "claim.quarantine"
    assert store.audit.list(object_id="trl_bad")[-1].detail["claims"] == 3
    lifted = world.unquarantine(q.id, actor="carol", role="reviewer", reason="false alarm")
    assert lifted.lifted_by == "carol" and store.claims.tiers() == before
    with pytest.raises(TrustError, match="already lifted"):
        world.unquarantine(q.id, actor="carol", role="reviewer", reason="again")


def test_overlapping_quarantines_release_only_when_both_lift(
    world: KnowledgeService, store: SqlStore
) -> None:
    q1 = world.quarantine("trl_bad", why="a", actor="carol", role="reviewer")
    q2 = world.quarantine("cmp_a", why="b", actor="carol", role="admin")
    assert {"clm_a1", "clm_a2", "clm_meta", "clm_b1"} <= set(q2.members)  # cmp_b reused cmp_a's trial
    assert q2.members["clm_a1"] == "supported"  # the tier before any quarantine
    world.unquarantine(q1.id, actor="carol", role="reviewer", reason="trial fine")
    assert store.claims.get("clm_a1").tier == "quarantined"
    world.unquarantine(q2.id, actor="carol", role="reviewer", reason="campaign fine")
    assert store.claims.get("clm_a1").tier == "supported"


def test_new_claims_from_quarantined_runs_enter_quarantined(world: KnowledgeService, store: SqlStore) -> None:
    world.quarantine("trl_bad", why="tampered", actor="agent", role="agent")
    late = world.add_claim(
        make_claim("clm_late", to="dicefocal", estimate=0.04),
        trial_evidence("clm_late", "trl_bad"),
        actor="agent",
    )
    assert late.tier == "quarantined"
    # Evidence attached later (the reproduction path) pulls the claim in as well.
    world.add_evidence("clm_free", trial_evidence("clm_free", "trl_bad", role="reproduction"), actor="agent")
    assert store.claims.get("clm_free").tier == "quarantined"


def test_evidence_written_without_the_knowledge_layer_still_counts(
    world: KnowledgeService, store: SqlStore
) -> None:
    store.evidence.add(trial_evidence("clm_free", "trl_bad", role="reproduction"))
    q = world.quarantine("trl_bad", why="tampered", actor="carol", role="reviewer")
    assert "clm_free" in q.members


def test_roles_and_unknown_targets(world: KnowledgeService, store: SqlStore) -> None:
    with pytest.raises(TrustError, match="needs role"):
        world.quarantine("trl_bad", why="x", actor="guest", role="viewer")
    with pytest.raises(NotFoundError, match="trl_nope"):
        world.quarantine("trl_nope", why="x", actor="carol", role="reviewer")
    with pytest.raises(TrustError, match="needs a reason"):
        world.quarantine("trl_bad", why="", actor="carol", role="reviewer")
    q = world.quarantine("clm_free", why="typo in statement", actor="agent", role="agent")
    with pytest.raises(TrustError, match="reviewer or admin"):
        world.unquarantine(q.id, actor="planner", role="agent", reason="I like it")
    assert store.claims.get("clm_free").tier == "quarantined"


def test_lifting_never_restores_a_validation_the_lifter_could_not_give(
    kb: KnowledgeService, store: SqlStore
) -> None:
    add_campaign(store, "cmp_v", "alice")
    ev = [Evidence(claim_id="clm_v", kind="trial", ref_id="t9", role="reproduction", detail={"seed": 9})]
    kb.add_claim(make_claim("clm_v", campaign="cmp_v"), ev, actor="agent")
    kb.transition("clm_v", "reproduced", actor="agent", role="agent", reason="fresh seeds")
    kb.transition("clm_v", "validated", actor="bob", role="reviewer", reason="ok")
    q = kb.quarantine("clm_v", why="check", actor="root", role="admin")
    kb.unquarantine(q.id, actor="root", role="admin", reason="done")
    assert store.claims.get("clm_v").tier == "reproduced"
    entry = next(e for e in store.audit.list(object_id="clm_v") if e.action == "claim.unquarantine")
    assert "renewed" in entry.detail["note"] and entry.detail["to"] == "reproduced"


@pytest.mark.slow
def test_quarantine_one_trial_in_10k_claims_under_5s(kb: KnowledgeService, store: SqlStore) -> None:
    add_campaign(store, "cmp_big", "alice")
    for t in range(500):
        add_trial(store, f"trl_{t:04d}", "cmp_big", seed=t)
    factors = ["loss", "lr", "augmentation", "batch_size", "depth"]
    batch = []
    for i in range(10_000):
        trials = [f"trl_{(i * 7 + j) % 500:04d}" for j in range(3)]
        claim = make_claim(
            f"clm_{i:05d}", campaign="cmp_big", factor=factors[i % 5], frm=i % 3, to=i % 3 + 1, estimate=None
        )
        batch.append((claim, trial_evidence(claim.id, *trials)))
        if len(batch) == 1000:
            kb.add_claims(batch, actor="agent")
            batch = []
    # Claims derived from claims citing the trial are descendants too.
    kb.add_claim(
        make_claim("clm_child", estimate=None),
        [Evidence(claim_id="clm_child", kind="claim", ref_id="clm_00000", role="derived_from")],
        actor="agent",
    )
    expected = set(store.evidence.citing("trl_0000")) | {"clm_child"}
    before = store.claims.tiers()
    start = time.perf_counter()
    q = kb.quarantine("trl_0000", why="bad run", actor="carol", role="reviewer")
    elapsed = time.perf_counter() - start
    after = store.claims.tiers()
    demoted = {c for c in after if after[c] != before[c]}
    assert demoted == expected == set(q.members) and len(expected) >= 60
    assert elapsed < 5.0, f"quarantine took {elapsed:.2f} s"


def test_reconcile_links_evidence_written_straight_to_the_store(
    world: KnowledgeService, store: SqlStore
) -> None:
    store.evidence.add(trial_evidence("clm_free", "trl_bad", role="reproduction"))
    assert world.reconcile()["evidence_edges_added"] == 1
    assert ("trl_bad", "derived_from") in world.graph.neighbors("clm_free", direction="out")
