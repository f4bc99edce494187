"""Claims, evidence, graph, facts, vectors, meta and quarantines: every method, on every backend."""

from __future__ import annotations

import pytest

from medloop.core.errors import ConflictError, NotFoundError, StoreError
from medloop.core.records import ClaimFacts, Edge, Entity, Quarantine
from medloop.core.store import SqlStore, VectorRow
from tests.contract.store.conftest import campaign, claim, evidence


def facts(
    cid: str, *, sign: int = 1, checksum: str = "c" * 64, factors: tuple[str, ...] = ("loss",)
) -> ClaimFacts:
    return ClaimFacts(
        claim_id=cid,
        task="segmentation",
        outcome="dice",
        dataset="D1",
        dataset_checksum=checksum,
        intervention="loss:dice->dicece",
        orientation=1,
        sign=sign,
        factors=list(factors),
        fingerprint={"n": 12.0},
    )


def test_claims_put_is_idempotent_and_atomic(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    a, b = claim("clm_a", campaign_id="cmp_1"), claim("clm_b", tier="refuted")
    assert store.claims.put([(a, [evidence("clm_a", "trl_1")]), (b, [])]) == ["clm_a", "clm_b"]
    c = claim("clm_c")
    assert store.claims.put([(b, [evidence("clm_b", "trl_9")]), (c, [])]) == ["clm_c"]
    assert store.evidence.list("clm_b") == []  # evidence of a repeated claim is not added
    assert store.claims.get("clm_a") == a and store.claims.get_many(["clm_c", "clm_x", "clm_a"]) == [c, a]
    with pytest.raises(StoreError, match="clm_z"):  # evidence of another claim: nothing written
        store.claims.put([(claim("clm_d"), [evidence("clm_z", "trl_1")])])
    assert store.claims.tiers() == {"clm_a": "supported", "clm_b": "refuted", "clm_c": "supported"}
    assert store.claims.tiers(["clm_b", "clm_x"]) == {"clm_b": "refuted"}
    with pytest.raises(NotFoundError, match="clm_x"):
        store.claims.get("clm_x")


def test_claims_list_filters_pages_and_tier_changes(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    stamp = "2026-01-01T00:00:00.000+00:00"
    for i in range(12):
        c = claim(
            f"clm_{i:02d}",
            campaign_id="cmp_1" if i % 2 else None,
            tier="supported" if i % 3 else "refuted",
            dataset="D2" if i == 5 else "D1",
        )
        store.claims.put([(c.model_copy(update={"updated_at": stamp}), [])])
    pages, after = [], None
    while True:
        page = store.claims.list(limit=5, after=after)
        pages.append([c.id for c in page])
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert [len(p) for p in pages] == [5, 5, 2] and [i for p in pages for i in p] == [
        f"clm_{i:02d}" for i in range(12)
    ]
    assert [c.id for c in store.claims.list(tiers=["refuted"])] == ["clm_00", "clm_03", "clm_06", "clm_09"]
    assert [c.id for c in store.claims.list(campaign_id="cmp_1", tiers=["refuted"])] == ["clm_03", "clm_09"]
    assert [c.id for c in store.claims.list(dataset="D2", outcome="dice")] == ["clm_05"]
    changed = store.claims.set_tier("clm_05", "validated")
    assert changed.tier == "validated" and store.claims.get("clm_05") == changed
    assert changed.updated_at > stamp
    with pytest.raises(NotFoundError):
        store.claims.set_tier("clm_x", "rejected")


def test_evidence_add_list_citing_and_edges_missing(store: SqlStore) -> None:
    store.claims.put([(claim("clm_a"), [evidence("clm_a", "trl_1")]), (claim("clm_b"), [])])
    store.evidence.add(
        [
            evidence("clm_b", "trl_1", role="control"),
            evidence("clm_b", "doi:1", kind="source", role="derived_from"),
        ]
    )
    store.evidence.add([evidence("clm_b", "trl_1", role="control")])  # idempotent
    assert [(e.kind, e.role, e.ref_id) for e in store.evidence.list("clm_b")] == [
        ("source", "derived_from", "doi:1"),
        ("trial", "control", "trl_1"),
    ]
    with pytest.raises(NotFoundError, match="clm_x"):  # all or nothing
        store.evidence.add([evidence("clm_a", "trl_7"), evidence("clm_x", "trl_7")])
    assert store.evidence.citing("trl_7") == [] and store.evidence.citing("trl_1") == ["clm_a", "clm_b"]
    assert store.evidence.list("clm_a")[0].detail == {"note": "trl_1"}
    assert store.evidence.without_edges() == []  # no facts yet: the knowledge layer has not seen them
    store.facts.put([facts("clm_b")])
    store.graph.put_edges(
        [Edge(src="clm_b", dst="trl_1", kind="derived_from", src_kind="claim", dst_kind="trial")]
    )
    assert [e.ref_id for e in store.evidence.without_edges()] == ["doi:1"]


def test_graph_entities_and_edges_in_seq_order(store: SqlStore) -> None:
    ents = [
        Entity(id="loss:dice", kind="loss", name="dice", attrs={"x": [1, "ü"]}),
        Entity(id="trl_1", kind="trial", name="t"),
    ]
    assert store.graph.put_entities(ents) == 2 and store.graph.put_entities(ents[:1]) == 0
    assert store.graph.get_entity("loss:dice") == ents[0]
    with pytest.raises(NotFoundError, match="loss:x"):
        store.graph.get_entity("loss:x")
    assert store.graph.max_seq() == 0 and store.graph.edges() == []

    def edge(src: str, dst: str, kind: str = "derived_from") -> Edge:
        return Edge(src=src, dst=dst, kind=kind, src_kind="claim", dst_kind="trial", attrs={"w": 1.5})  # type: ignore[arg-type]

    made = [edge("c1", "t1"), edge("c2", "t1"), edge("c1", "c2", "supports"), edge("c3", "t2")]
    assert store.graph.put_edges(made) == 4 and store.graph.put_edges([made[0], edge("c4", "t2")]) == 1
    # Sequence numbers increase in write order; a skipped duplicate may leave a gap.
    got = store.graph.edges()
    seq = [e.seq for e in got]
    assert [(e.src, e.dst) for e in got] == [
        ("c1", "t1"),
        ("c2", "t1"),
        ("c1", "c2"),
        ("c3", "t2"),
        ("c4", "t2"),
    ]
    assert (
        seq == sorted(set(seq))
        and seq[0] >= 1
        and got[0].attrs == {"w": 1.5}
        and store.graph.max_seq() == seq[-1]
    )
    assert [e.seq for e in store.graph.edges(after_seq=seq[2])] == seq[3:]
    assert [e.seq for e in store.graph.edges(src="c1", kinds=["supports"])] == [seq[2]]
    assert [e.src for e in store.graph.edges(dst=["t2", "t1"], kinds=["derived_from"])] == [
        "c1",
        "c2",
        "c3",
        "c4",
    ]
    assert [e.seq for e in store.graph.edges(limit=2)] == seq[:2]
    assert store.graph.edge_rows(after_seq=seq[3]) == [(seq[4], "c4", "t2", "derived_from", "claim", "trial")]


def test_facts_seqs_relations_and_structured_filter(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    store.claims.put(
        [(claim(c, campaign_id="cmp_1" if c != "c4" else None), []) for c in ("c1", "c2", "c3", "c4")]
    )
    seqs = store.facts.put(
        [facts("c1"), facts("c2", checksum="d" * 64), facts("c3", sign=-1, factors=("loss", "lr"))]
    )
    again = store.facts.put([facts("c1"), facts("c4")])
    assert seqs["c1"] < seqs["c2"] < seqs["c3"] < again["c4"] and again["c1"] == seqs["c1"]
    assert store.facts.max_seq() == again["c4"]
    assert [f.claim_id for f in store.facts.list(after_seq=seqs["c2"])] == ["c3", "c4"]
    assert [f.seq for f in store.facts.list(claim_ids=["c4", "c2"])] == [seqs["c2"], again["c4"]]
    expected = facts("c3", sign=-1, factors=("loss", "lr")).model_copy(update={"seq": seqs["c3"]})
    assert store.facts.list(claim_ids=["c3"])[0] == expected
    assert store.facts.list(intervention="none") == [] and len(store.facts.list(outcome="dice", limit=2)) == 2
    assert store.facts.rows()[2] == ("c3", "segmentation", "dice", ["loss", "lr"])

    def related(**kw: object) -> list[str]:
        args = {
            "intervention": "loss:dice->dicece",
            "outcome": "dice",
            "signs": [1, -1],
            "dataset_checksum": "c" * 64,
        } | kw
        return [r.claim_id for r in store.facts.related(**args)]  # type: ignore[arg-type]

    assert related(exclude="c4") == ["c3", "c1", "c2"]  # same dataset first, newest first
    rows = store.facts.related(
        intervention="loss:dice->dicece", outcome="dice", signs=[1], dataset_checksum="c" * 64, exclude="c1"
    )
    assert [(r.claim_id, r.fingerprint) for r in rows] == [
        ("c4", {}),
        ("c2", {"n": 12.0}),
    ]  # same dataset: not read
    assert related(exclude="c3", signs=[1], other_campaign="cmp_1") == [
        "c4"
    ]  # a claim without campaign counts
    assert related(exclude="c3", signs=[1], limit=1) == ["c4"]

    assert store.facts.find_ids(tiers=["supported"]) == ["c4", "c3", "c2", "c1"]
    assert store.facts.find_ids(tiers=["supported"], factors=["lr"], task="segmentation", outcome="dice") == [
        "c3"
    ]
    store.claims.set_tier("c3", "refuted")
    assert store.facts.find_ids(tiers=["supported"], factors=["lr"]) == []
    assert store.facts.find_ids(tiers=["refuted"], factors=["lr", "loss"], limit=5) == ["c3"]


def test_vectors_and_meta_upsert(store: SqlStore) -> None:
    store.claims.put([(claim("c1"), []), (claim("c2"), [])])
    raw = bytes(range(256)) * 2
    store.vectors.put(
        [VectorRow("c1", "hash", 128, "h1", raw), VectorRow("c2", "hash", 2, "h2", b"\x00\x01")]
    )
    store.vectors.put([VectorRow("c2", "minilm", 3, "h3", b"\xff")])
    got = store.vectors.get(["c1", "c2", "cx"])
    assert got == {
        "c1": VectorRow("c1", "hash", 128, "h1", raw),
        "c2": VectorRow("c2", "minilm", 3, "h3", b"\xff"),
    }
    assert isinstance(got["c1"].vector, bytes)
    assert store.meta.get("embedder") is None
    store.meta.set("embedder", "hash")
    store.meta.set("embedder", "minilm")
    assert store.meta.get("embedder") == "minilm"


def test_quarantines_members_lift_and_holds(store: SqlStore) -> None:
    store.claims.put([(claim(c), []) for c in ("c1", "c2", "c3")])
    q1 = Quarantine(
        id="q1",
        target_type="source",
        target_id="doi:1",
        why="retracted",
        actor="ada",
        members={"c1": "supported"},
    )
    q2 = Quarantine(
        id="q2",
        target_type="trial",
        target_id="trl_1",
        why="bad",
        actor="ada",
        created_at="2999-01-01T00:00:00.000+00:00",
    )
    store.quarantines.put(q1)
    store.quarantines.put(q2)
    store.quarantines.add_members("q2", {"c2": "refuted", "c1": "supported"})
    assert store.quarantines.get("q1") == q1
    assert store.quarantines.get("q2").members == {"c1": "supported", "c2": "refuted"}
    with pytest.raises(ConflictError):
        store.quarantines.put(q1)
    assert store.quarantines.holds(["c1", "c2", "c3"]) == {"c1": ["q1", "q2"], "c2": ["q2"]}
    store.quarantines.lift("q1", actor="bob", reason="ok")
    store.quarantines.lift("q1", actor="eve", reason="again")  # lifting twice changes nothing
    lifted = store.quarantines.get("q1")
    assert (lifted.lifted_by, lifted.lift_reason) == ("bob", "ok") and lifted.lifted_at
    assert store.quarantines.holds(["c1"]) == {"c1": ["q2"]}
    assert [q.id for q in store.quarantines.list()] == ["q1", "q2"]
    assert [q.id for q in store.quarantines.list(active_only=True)] == ["q2"]
    assert [q.id for q in store.quarantines.list(target_id="doi:1")] == ["q1"]
    with pytest.raises(NotFoundError, match="q9"):
        store.quarantines.get("q9")
