"""What holds across repositories on every backend: transactions, two writer processes,
sort orders that ignore the server's collation, exact JSON and timestamp round trips."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
import sqlalchemy as sa

from medloop.core.errors import ConflictError, NotFoundError
from medloop.core.records import ClaimFacts
from medloop.core.store import SqlStore, open_store
from tests.contract.store.conftest import StoreCase, campaign, claim, evidence, hypothesis, result, trial


def _write_everything(store: SqlStore, suffix: str = "") -> None:
    store.campaigns.add(campaign(f"cmp_1{suffix}"))
    t = trial(f"trl_1{suffix}", f"cmp_1{suffix}")
    store.trials.put(t)
    store.trials.set_result(t.id, result(t, 0.5))
    store.cycles.put_hypothesis(hypothesis(f"hyp_1{suffix}", f"cmp_1{suffix}"))
    store.claims.put([(claim(f"clm_1{suffix}"), [evidence(f"clm_1{suffix}", t.id)])])
    store.facts.put(
        [
            ClaimFacts(
                claim_id=f"clm_1{suffix}",
                task="segmentation",
                outcome="dice",
                dataset="D",
                intervention="i",
                orientation=1,
                factors=["loss"],
            )
        ]
    )
    store.audit.append("alice", "x", "claim", f"clm_1{suffix}", {})
    store.meta.set(f"k{suffix}", "v")


def test_a_failed_transaction_leaves_nothing_half_written(case: StoreCase, store: SqlStore) -> None:
    other = case.open()  # another connection (another process, in effect)
    with pytest.raises(RuntimeError), store.transaction():
        _write_everything(store)
        with store.transaction():  # nested: joins the outer one
            store.audit.append("alice", "y", "claim", "clm_1", {})
        assert other.meta.get("k") is None  # not visible before commit
        raise RuntimeError("crash mid-write")
    # A database error inside a transaction rolls all of it back too.
    with pytest.raises(ConflictError), store.transaction():
        _write_everything(store)
        store.campaigns.add(campaign("cmp_1"))  # duplicate key
    for st in (store, other):
        assert st.campaigns.list().items == [] and st.trials.list().items == [] and st.claims.tiers() == {}
        assert st.audit.list() == [] and st.facts.max_seq() == 0 and st.meta.get("k") is None
        assert st.listings.claims().items == [] and st.evidence.citing("trl_1") == []
    _write_everything(store)  # the store is usable after both
    assert other.claims.tiers() == {"clm_1": "supported"} and other.audit.verify() == (True, None)
    other.close()


def _writer(url: str, name: str, start: Any, out: Any) -> None:
    store = open_store(url)
    start.wait(timeout=120)
    new_trials = new_claims = charged = 0
    for i in range(40):
        with store.transaction():
            store.audit.append(name, "write", "trial", f"trl_{i:03d}", {"i": i})
            store.cycles.put_hypothesis(hypothesis(f"hyp_{name}_{i}", "cmp_1"))
        new_trials += store.trials.put(trial(f"trl_{i:03d}", "cmp_1", seed=i))  # both write the same ids
        new_claims += len(
            store.claims.put([(claim(f"clm_{i:03d}"), [evidence(f"clm_{i:03d}", f"trl_{i:03d}")])])
        )
        charged += store.ledger.charge("alice", "trials", f"trl_{i:03d}", 1.0)
    store.close()
    out.put((new_trials, new_claims, charged))


def test_two_processes_writing_at_once_lose_and_duplicate_nothing(case: StoreCase, store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(case.url, n, start, out)) for n in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:  # a writer that fails (a lost race) exits non-zero at once
        p.join(timeout=300)
        assert p.exitcode == 0
    counts = [out.get(timeout=10) for _ in procs]
    # Every id was new exactly once across the two writers, and is stored once.
    assert [sum(c[k] for c in counts) for k in range(3)] == [40, 40, 40]
    assert len(store.trials.list().items) == 40 and len(store.claims.tiers()) == 40
    assert store.ledger.usage("alice") == {"trials": 40.0}
    entries = store.audit.list()
    assert [e.seq for e in entries] == list(range(1, 81)) and store.audit.verify() == (True, None)
    order = store.db.all(sa.text("SELECT seq FROM hypotheses"))
    assert len(order) == 80 and len({r[0] for r in order}) == 80  # insertion order has no ties


def test_sort_orders_are_byte_wise_whatever_the_server_collation(case: StoreCase, store: SqlStore) -> None:
    ids = ["clm_a", "clm_B", "clm__", "clm_Z", "clm_ä", "clm_a-b", "clm_ab", "clm_A"]
    store.claims.put([(claim(i), []) for i in ids])
    assert [c.id for c in store.claims.list()] == sorted(ids)
    assert [c["id"] for c in store.listings.claims()] == sorted(ids)
    page = store.claims.list(limit=3, after="clm_Z")
    assert [c.id for c in page] == sorted(i for i in ids if i > "clm_Z")[:3]
    if case.name == "postgres":  # the test database's own collation would order them otherwise
        values = ", ".join(f"('{i}')" for i in ids)
        server = [r[0] for r in store.db.all(sa.text(f"SELECT x FROM (VALUES {values}) v(x) ORDER BY x"))]
        assert server != sorted(ids)


def test_json_and_timestamps_round_trip_exactly(store: SqlStore) -> None:
    c = campaign("cmp_1").model_copy(
        update={
            "summary": {
                "ünï": '✓ "quoted" \\ \n',
                "f": [0.1, 1e-300, 1.7976931348623157e308, -0.0],
                "big": 2**63 - 1,
                "nested": {"b": {"c": [None, True, {}]}},
            },
            "created_at": "2026-12-31T23:59:59.999+00:00",
        }
    )
    store.campaigns.add(c)
    got = store.campaigns.get("cmp_1")
    assert got == c and got.model_dump_json() == c.model_dump_json()
    t = trial("trl_1", "cmp_1", seed=2**62)
    store.trials.put(t)
    r = result(t, 0.1 + 0.2).model_copy(update={"efficiency": {"s": 1 / 3, "tiny": 5e-324}})
    assert store.trials.set_result("trl_1", r).result == r
    assert (
        store.listings.trials().items[0]["objective"] == 0.1 + 0.2
        and store.trials.get("trl_1").spec.seed == 2**62
    )
    with pytest.raises(NotFoundError):
        store.trials.get("trl_2")


def _open(url: str, start: Any, out: Any) -> None:
    start.wait(timeout=120)
    out.put(open_store(url).audit.append("p", "open", "store", "s", {}).seq)


def test_processes_opening_a_new_database_at_once_create_it_once(case: StoreCase) -> None:
    ctx = multiprocessing.get_context("spawn")
    # Six at once: creating the file and switching it to WAL race (SQLite answered
    # "database is locked" to the journal-mode switch without waiting, in CI).
    n = 6
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(case.url, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=10) for _ in procs) == list(range(1, n + 1))
    assert case.open().audit.verify() == (True, None)
