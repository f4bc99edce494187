"""KnowledgeService: SQL-first writes, indexes that follow SQL, hybrid retrieval."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medloop.core.errors import TrustError
from medloop.core.store import SqlStore
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.service import KnowledgeService
from tests.unit.knowledge.builders import FP, add_campaign, add_trial, make_claim, trial_evidence


def test_add_claim_is_sql_first_and_idempotent(kb: KnowledgeService, store: SqlStore) -> None:
    add_campaign(store, "cmp_a", "alice")
    add_trial(store, "trl_1", "cmp_a", seed=1)
    claim = make_claim("clm_1", campaign="cmp_a")
    stored = kb.add_claim(claim, trial_evidence("clm_1", "trl_1"), actor="agent")
    assert stored == store.claims.get("clm_1")
    again = kb.add_claim(claim.model_copy(update={"statement": "something else"}), [], actor="agent")
    assert again.statement == claim.statement  # the first write wins; nothing duplicated
    assert [e.action for e in store.audit.list(object_id="clm_1")] == ["claim.add"]
    assert kb.vectors.ids() == {"clm_1"}
    # claim -> trial evidence -> dataset and method-factor entities; campaign provenance
    assert ("trl_1", "derived_from") in kb.graph.neighbors("clm_1", direction="out")
    assert {n for n, _ in kb.graph.neighbors("trl_1", kinds=["about"], direction="out")} >= {
        "dataset:Phantom@cccccccccccc",
        "loss:dicece",
    }
    assert ("cmp_a", "derived_from") in kb.graph.neighbors("trl_1", direction="out")


def test_new_claims_cannot_enter_above_statistics(kb: KnowledgeService) -> None:
    for tier in ("reproduced", "validated", "rejected", "quarantined", "superseded"):
        with pytest.raises(TrustError, match="cannot enter"):
            kb.add_claim(make_claim(f"clm_{tier}", tier=tier), [], actor="agent")


def test_planning_retrieval_roles_filters_and_reasons(kb: KnowledgeService, store: SqlStore) -> None:
    kb.add_claim(make_claim("clm_sup"), [], actor="agent")
    kb.add_claim(make_claim("clm_rep", to="dicefocal", estimate=0.05), [], actor="agent")
    kb.add_claim(make_claim("clm_lr", factor="lr", frm=0.001, to=0.01), [], actor="agent")
    kb.add_claim(make_claim("clm_hd", outcome="hd95"), [], actor="agent")
    kb.add_claim(make_claim("clm_old", to="dicefocal", estimate=0.01), [], actor="agent")
    # Promote through the lifecycle; demote one to superseded.
    store.claims.set_tier("clm_rep", "reproduced")
    kb.transition("clm_old", "superseded", actor="agent", role="agent", reason="replaced by clm_rep")
    query = RetrievalQuery(
        text="dicefocal loss improves dice", task="segmentation", outcome="dice", factors=["loss"]
    )
    results = kb.retrieve(query)
    ids = [r.claim.id for r in results]
    assert set(ids) == {"clm_sup", "clm_rep"}  # lr (factor), hd95 (outcome), superseded: filtered out
    by_id = {r.claim.id: r for r in results}
    assert by_id["clm_rep"].role == "evidence" and by_id["clm_sup"].role == "suggestion"
    assert ids[0] == "clm_rep"  # higher tier, larger effect
    assert any("tier reproduced" in reason for reason in by_id["clm_rep"].reasons)
    assert any("labelled suggestion" in reason for reason in by_id["clm_sup"].reasons)
    browse = kb.retrieve(query.model_copy(update={"purpose": "browse"}))
    assert "clm_old" in {r.claim.id for r in browse}


def test_fingerprint_similarity_ranks_similar_datasets_first(kb: KnowledgeService) -> None:
    near = dict(FP)
    far = {"spacing_z": 5.0, "n_cases": 400.0, "intensity_mean": 3.0}
    kb.add_claim(make_claim("clm_far", dataset="Far", checksum="f" * 64, fingerprint=far), [], actor="agent")
    kb.add_claim(
        make_claim("clm_near", dataset="Near", checksum="n" * 64, fingerprint=near), [], actor="agent"
    )
    res = kb.retrieve(
        RetrievalQuery(text="Changing loss from dice to dicece", fingerprint=FP, factors=["loss"])
    )
    assert [r.claim.id for r in res] == ["clm_near", "clm_far"]
    assert any("fingerprint similarity 1.00" in r for r in res[0].reasons)


def test_contradictions_are_linked_and_expand_retrieval(kb: KnowledgeService, store: SqlStore) -> None:
    kb.add_claim(make_claim("clm_up", estimate=0.03), [], actor="agent")
    kb.add_claim(
        make_claim("clm_down", frm="dicece", to="dice", estimate=-0.02), [], actor="agent"
    )  # same finding, reversed
    kb.add_claim(make_claim("clm_against", estimate=-0.02), [], actor="agent")
    kb.add_claim(make_claim("clm_ns", estimate=-0.02, p=0.4), [], actor="agent")  # not significant
    edges = {(e.src, e.kind, e.dst) for e in store.graph.edges(kinds=["contradicts", "supports"])}
    assert ("clm_against", "contradicts", "clm_up") in edges
    assert ("clm_against", "contradicts", "clm_down") in edges
    assert not any("clm_ns" in (s, d) for s, _, d in edges)
    assert not any(k == "contradicts" and {s, d} == {"clm_up", "clm_down"} for s, k, d in edges)
    res = kb.retrieve(RetrievalQuery(text="dicece", factors=["loss"], k=10))
    up = next(r for r in res if r.claim.id == "clm_up")
    assert "related by graph: contradicts clm_against" in up.reasons


def test_crash_between_commit_and_index_is_repaired(
    make_kb: Callable[..., KnowledgeService], store: SqlStore, tmp_path: Path
) -> None:
    kb = make_kb()
    kb.add_claim(make_claim("clm_1"), [], actor="agent")
    kb.close()
    # Simulate a process that committed SQL and died before touching the indexes.
    dead = make_kb(reconcile=False)
    dead._index_new = lambda stored, vecs: None  # type: ignore[method-assign]
    dead.add_claim(make_claim("clm_2", to="dicefocal"), [], actor="agent")
    restarted = make_kb()
    assert restarted.vectors.ids() == set(store.claims.tiers()) == {"clm_1", "clm_2"}
    assert restarted.graph.nodes("claim") == {"clm_1", "clm_2"}


def test_other_process_claims_appear_at_next_query(make_kb: Callable[..., KnowledgeService]) -> None:
    reader, writer = make_kb(), make_kb()
    writer.add_claim(make_claim("clm_new"), [], actor="agent")
    assert "clm_new" in {r.claim.id for r in reader.retrieve(RetrievalQuery(text="loss dicece", k=5))}


def test_claims_written_straight_to_sql_are_backfilled(
    make_kb: Callable[..., KnowledgeService], store: SqlStore
) -> None:
    store.claims.put([(make_claim("clm_raw"), [])])
    kb = make_kb()
    assert "clm_raw" in kb.vectors.ids()
    assert ("metric:dice", "about") in kb.graph.neighbors("clm_raw", direction="out")
