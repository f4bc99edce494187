"""The trust lifecycle: every route to `validated` except a reviewer's is refused."""

from __future__ import annotations

import pytest

from medloop.core.errors import TrustError
from medloop.core.records import Evidence
from medloop.core.store import SqlStore
from medloop.knowledge.service import KnowledgeService
from tests.unit.knowledge.builders import add_campaign, add_trial, make_claim, trial_evidence


@pytest.fixture
def reproduced(kb: KnowledgeService, store: SqlStore) -> str:
    add_campaign(store, "cmp_a", "alice")
    add_trial(store, "trl_1", "cmp_a", seed=1)
    add_trial(store, "trl_r", "cmp_a", seed=7, arm="reproduction")
    ev = [
        *trial_evidence("clm_1", "trl_1"),
        Evidence(claim_id="clm_1", kind="trial", ref_id="trl_r", role="reproduction", detail={"seed": 7}),
    ]
    kb.add_claim(make_claim("clm_1", campaign="cmp_a", author="agent"), ev, actor="agent")
    kb.transition("clm_1", "reproduced", actor="agent", role="agent", reason="3 fresh seeds agree")
    return "clm_1"


def test_reviewer_who_is_not_owner_or_author_validates(
    kb: KnowledgeService, store: SqlStore, reproduced: str
) -> None:
    claim = kb.transition(reproduced, "validated", actor="bob", role="reviewer", reason="checked the runs")
    assert claim.tier == "validated" == store.claims.get(reproduced).tier
    last = store.audit.list(object_id=reproduced)[-1]
    assert (last.actor, last.action, last.detail["from"], last.detail["to"]) == (
        "bob",
        "claim.transition",
        "reproduced",
        "validated",
    )
    assert store.audit.verify() == (True, None)


@pytest.mark.parametrize(
    ("actor", "role", "match"),
    [
        ("planner", "agent", "needs role reviewer"),
        ("root", "admin", "needs role reviewer"),
        ("guest", "viewer", "needs role reviewer"),
        ("alice", "reviewer", "own campaign"),
        ("agent", "reviewer", "authored"),
        ("bob", "superuser", "unknown role"),
    ],
)
def test_non_reviewer_routes_to_validated_are_refused(
    kb: KnowledgeService, store: SqlStore, reproduced: str, actor: str, role: str, match: str
) -> None:
    with pytest.raises(TrustError, match=match):
        kb.transition(reproduced, "validated", actor=actor, role=role, reason="looks fine")
    assert store.claims.get(reproduced).tier == "reproduced"
    assert [e.action for e in store.audit.list(object_id=reproduced)] == ["claim.add", "claim.transition"]


def test_validation_needs_reproduction_first(kb: KnowledgeService) -> None:
    kb.add_claim(make_claim("clm_s"), [], actor="agent")
    with pytest.raises(TrustError, match="supported -> validated is not a lifecycle step"):
        kb.transition("clm_s", "validated", actor="bob", role="reviewer", reason="skip ahead")
    with pytest.raises(TrustError, match="no reproduction evidence"):
        kb.transition("clm_s", "reproduced", actor="agent", role="agent", reason="trust me")


def test_entering_or_importing_as_validated_is_refused(kb: KnowledgeService) -> None:
    with pytest.raises(TrustError, match="cannot enter"):
        kb.add_claim(make_claim("clm_v", tier="validated"), [], actor="bob")


def test_same_seed_rerun_is_not_a_reproduction(kb: KnowledgeService) -> None:
    ev = [
        Evidence(claim_id="clm_2", kind="trial", ref_id="t1", role="treatment", detail={"seed": 1}),
        Evidence(claim_id="clm_2", kind="trial", ref_id="t1b", role="reproduction", detail={"seed": 1}),
    ]
    kb.add_claim(make_claim("clm_2"), ev, actor="agent")
    with pytest.raises(TrustError, match="no reproduction evidence"):
        kb.transition("clm_2", "reproduced", actor="agent", role="agent", reason="same seed again")


def test_reproducing_claim_with_same_direction_counts(kb: KnowledgeService) -> None:
    kb.add_claim(make_claim("clm_o"), [], actor="agent")
    rep = [Evidence(claim_id="clm_r", kind="claim", ref_id="clm_o", role="reproduces")]
    kb.add_claim(make_claim("clm_r", estimate=0.025), rep, actor="agent")
    assert (
        kb.transition("clm_o", "reproduced", actor="agent", role="agent", reason="clm_r").tier == "reproduced"
    )


def test_quarantine_is_not_a_plain_transition_and_reasons_are_required(kb: KnowledgeService) -> None:
    kb.add_claim(make_claim("clm_q"), [], actor="agent")
    with pytest.raises(TrustError, match="knowledge quarantine"):
        kb.transition("clm_q", "quarantined", actor="bob", role="reviewer", reason="bad")
    with pytest.raises(TrustError, match="needs a reason"):
        kb.transition("clm_q", "rejected", actor="bob", role="reviewer", reason=" ")
