"""Campaigns, cycles and hypotheses, trials and their listings: every method, on every backend."""

from __future__ import annotations

import pytest

from medloop.core.errors import ConflictError, NotFoundError
from medloop.core.store import SqlStore
from tests.contract.store.conftest import campaign, claim, hypothesis, result, trial


def test_campaigns_round_trip_list_newest_first_and_update(store: SqlStore) -> None:
    ids = ["cmp_01", "cmp_03", "cmp_02"]
    for i, cid in enumerate(ids):
        store.campaigns.add(campaign(cid, status="running" if i else "created"))
    original = campaign("cmp_01")
    got = store.campaigns.get("cmp_01")
    assert got.model_dump(exclude={"created_at", "updated_at"}) == original.model_dump(
        exclude={"created_at", "updated_at"}
    )
    assert [c.id for c in store.campaigns.list()] == ["cmp_03", "cmp_02", "cmp_01"]
    assert [c.id for c in store.campaigns.list(status="running")] == ["cmp_03", "cmp_02"]
    first = store.campaigns.list(limit=2)
    assert [c.id for c in first] == ["cmp_03", "cmp_02"] and first.next_cursor == "cmp_02"
    rest = store.campaigns.list(limit=2, after=first.next_cursor)
    assert [c.id for c in rest] == ["cmp_01"] and rest.next_cursor is None

    updated = store.campaigns.update(
        "cmp_01", status="paused", summary={"waiting_for": "review"}, incumbent_objective=0.8
    )
    again = store.campaigns.get("cmp_01")
    assert again == updated and again.status == "paused" and again.summary == {"waiting_for": "review"}
    assert again.updated_at >= got.updated_at and again.spec == original.spec
    with pytest.raises(ValueError):
        store.campaigns.update("cmp_01", status="no such status")
    assert store.campaigns.get("cmp_01").status == "paused"
    with pytest.raises(NotFoundError, match="cmp_x"):
        store.campaigns.get("cmp_x")
    with pytest.raises(NotFoundError):
        store.campaigns.update("cmp_x", status="paused")
    with pytest.raises(ConflictError):
        store.campaigns.add(campaign("cmp_01"))


def test_cycles_upsert_and_hypotheses_keep_insertion_order(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    store.cycles.record("cmp_1", 2, {"hypotheses": ["b"], "active_s": 1.5})
    store.cycles.record("cmp_1", 1, {"hypotheses": ["a"]})
    store.cycles.record("cmp_1", 2, {"hypotheses": ["b", "c"], "active_s": 3.0})
    assert store.cycles.list("cmp_1") == [
        {"idx": 1, "hypotheses": ["a"]},
        {"idx": 2, "hypotheses": ["b", "c"], "active_s": 3.0},
    ]
    assert store.cycles.list("cmp_none") == []
    # Ids sort against insertion order, so an ORDER BY id would fail this.
    for hid, cycle in (("hyp_z", 1), ("hyp_a", 1), ("hyp_m", 2), ("hyp_b", 1)):
        store.cycles.put_hypothesis(hypothesis(hid, "cmp_1", cycle))
    store.cycles.put_hypothesis(
        hypothesis("hyp_a", "cmp_1", 1, verdict="supported")
    )  # an update keeps its place
    assert [h.id for h in store.cycles.hypotheses("cmp_1")] == ["hyp_z", "hyp_a", "hyp_b", "hyp_m"]
    assert [h.id for h in store.cycles.hypotheses("cmp_1", cycle=2)] == ["hyp_m"]
    assert store.cycles.get_hypothesis("hyp_a").verdict == "supported"
    assert store.cycles.get_hypothesis("hyp_z") == hypothesis("hyp_z", "cmp_1", 1)
    with pytest.raises(NotFoundError, match="hyp_x"):
        store.cycles.get_hypothesis("hyp_x")


def test_trials_put_is_idempotent_and_results_round_trip(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    store.cycles.put_hypothesis(hypothesis("hyp_1", "cmp_1"))
    t = trial("trl_1", "cmp_1", seed=2**40, hid="hyp_1")
    assert store.trials.put(t) is True
    assert store.trials.put(t.model_copy(update={"status": "running"})) is False  # changes nothing
    assert store.trials.get("trl_1") == t
    store.trials.set_status("trl_1", "running")
    assert store.trials.get("trl_1").status == "running"
    res = result(t, 0.8125)
    done = store.trials.set_result("trl_1", res)
    assert done.status == "succeeded" and done.result == res and store.trials.get("trl_1") == done
    with pytest.raises(NotFoundError, match="trl_x"):
        store.trials.set_result("trl_x", res)
    with pytest.raises(NotFoundError, match="trl_x"):
        store.trials.get("trl_x")
    with pytest.raises(ConflictError):  # a trial of a campaign that does not exist
        store.trials.put(trial("trl_2", "cmp_none"))


def test_trials_list_filters_and_cursor_pages_cover_every_trial_once(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    store.campaigns.add(campaign("cmp_2"))
    made = {}
    for i in range(23):
        t = trial(
            f"trl_{i:03d}",
            "cmp_1" if i % 3 else "cmp_2",
            seed=i,
            status="failed" if i % 5 == 0 else "pending",
        )
        store.trials.put(t)
        made[t.id] = t
    seen, after = [], None
    while True:
        page = store.trials.list(limit=5, after=after)
        seen += [t.id for t in page]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert seen == sorted(made)
    assert [t.id for t in store.trials.list(campaign_id="cmp_2")] == sorted(
        i for i, t in made.items() if t.campaign_id == "cmp_2"
    )
    failed = store.trials.list(campaign_id="cmp_1", status="failed")
    assert {t.id for t in failed} == {
        i for i, t in made.items() if t.campaign_id == "cmp_1" and t.status == "failed"
    }
    assert store.trials.list(hypothesis_id="hyp_none").items == []


def test_find_returns_the_oldest_trial_of_a_spec_in_a_status(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    first = trial("trl_b", "cmp_1", seed=7).model_copy(update={"created_at": "2026-01-01T00:00:00.000+00:00"})
    second = trial("trl_a", "cmp_1", seed=7).model_copy(
        update={"created_at": "2026-01-02T00:00:00.000+00:00"}
    )
    for t in (second, first):
        store.trials.put(t)
        store.trials.set_result(t.id, result(t, 0.5))
    found = store.trials.find(first.spec_hash)
    assert found is not None and found.id == "trl_b"
    assert store.trials.find(first.spec_hash, status="failed") is None
    assert store.trials.find("0" * 64) is None


def test_listings_match_the_records_and_follow_writes(store: SqlStore) -> None:
    store.campaigns.add(campaign("cmp_1"))
    before = store.listings.campaign_progress("cmp_1")
    for i in range(4):
        t = trial(f"trl_{i}", "cmp_1", seed=i)
        store.trials.put(t)
        if i < 3:
            store.trials.set_result(t.id, result(t, 0.5 + i / 10, "succeeded" if i else "failed"))
    rows = store.listings.trials(campaign_id="cmp_1", limit=3)
    assert [r["id"] for r in rows] == ["trl_0", "trl_1", "trl_2"] and rows.next_cursor == "trl_2"
    assert store.listings.trials(campaign_id="cmp_1", after="trl_2").items[0]["id"] == "trl_3"
    full = store.trials.get("trl_1")
    assert rows.items[1] | {"created_at": full.created_at} == {
        "id": "trl_1",
        "campaign_id": "cmp_1",
        "hypothesis_id": None,
        "arm": "control",
        "seed": 1,
        "status": "succeeded",
        "objective": 0.6,
        "created_at": full.created_at,
        "updated_at": rows.items[1]["updated_at"],
    }
    assert store.listings.trial_counts("cmp_1") == {"failed": 1, "succeeded": 2, "pending": 1}
    assert [r[0] for r in store.listings.trial_curve("cmp_1")] == ["trl_0", "trl_1", "trl_2"]
    assert store.listings.trial_curve("cmp_1")[2] == ("trl_2", "control", "succeeded", 0.7)
    assert len(store.listings.recent_trials("cmp_1", limit=2)) == 2
    after = store.listings.campaign_progress("cmp_1")
    assert after["trials"] == 4 and after["hypotheses"] == 0 and after != before
    with pytest.raises(NotFoundError):
        store.listings.campaign_progress("cmp_x")

    store.claims.put([(claim("clm_b", campaign_id="cmp_1", tier="refuted", estimate=-0.02), [])])
    store.claims.put([(claim("clm_a", campaign_id="cmp_1", estimate=None, dataset="D2"), [])])
    listed = store.listings.claims()
    assert [c["id"] for c in listed] == ["clm_a", "clm_b"]
    b = listed.items[1]
    assert (b["tier"], b["estimate"], b["ci_low"], b["p_adjusted"], b["author"]) == (
        "refuted",
        -0.02,
        -0.03,
        0.02,
        "agent",
    )
    assert listed.items[0]["estimate"] is None and listed.items[0]["dataset"] == "D2"
    assert [c["id"] for c in store.listings.claims(tiers=["refuted"])] == ["clm_b"]
    assert [c["id"] for c in store.listings.claims(dataset="D2", outcome="dice", campaign_id="cmp_1")] == [
        "clm_a"
    ]
    store.claims.set_tier("clm_b", "rejected")
    assert store.listings.claims(tiers=["rejected"]).items[0]["id"] == "clm_b"
    assert store.listings.campaign_progress("cmp_1")["claim_at"] is not None


def test_listings_are_plain_json_ready_dicts(store: SqlStore) -> None:
    import orjson  # what the API serialises listings with; it refuses str subclasses as keys

    store.campaigns.add(campaign("cmp_1"))
    store.trials.put(trial("trl_1", "cmp_1"))
    store.claims.put([(claim("clm_1", campaign_id="cmp_1"), [])])
    for rows in (
        store.listings.trials().items,
        store.listings.claims().items,
        store.listings.recent_trials("cmp_1"),
    ):
        assert rows and all(type(k) is str for r in rows for k in r)
        orjson.dumps(rows)
    assert all(type(k) is str for k in store.listings.campaign_progress("cmp_1"))
