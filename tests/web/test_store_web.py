"""The web tables of the store: listings match the records and follow every claim write;
trial pages read a covering index (no JSON). 0.1.0 workspaces: tests/unit/test_store.py."""

from __future__ import annotations

import sqlalchemy as sa

from tests.web.conftest import Web


def _listing(web: Web) -> dict[str, tuple[str, float | None]]:
    rows = web.store.listings.claims(limit=10_000).items
    return {r["id"]: (r["tier"], r["estimate"]) for r in rows}


def test_claim_listing_follows_every_claim_write(web: Web) -> None:
    claims = web.store.claims.list(limit=10_000).items
    expected = {c.id: (c.tier, c.effect.estimate if c.effect else None) for c in claims}
    assert _listing(web) == expected
    claim_id = web.claims("reproduced")[0]
    web.store.claims.set_tier(claim_id, "rejected")  # a write below the knowledge layer
    assert _listing(web)[claim_id][0] == "rejected"
    trials = web.store.listings.trials(campaign_id=web.campaign_id, limit=10_000).items
    assert sorted(t["id"] for t in trials) == sorted(
        t.id for t in web.store.trials.list(campaign_id=web.campaign_id, limit=10_000)
    )


def test_trial_listing_pages_read_a_covering_index(web: Web) -> None:
    plan = web.store.db.all(
        sa.text("EXPLAIN QUERY PLAN SELECT id, updated_at FROM trials WHERE campaign_id = :c ORDER BY id"),
        {"c": "x"},
    )
    assert "COVERING INDEX trials_campaign_id" in " ".join(str(tuple(r)) for r in plan)
