"""The web tables of the store: listings match the records, triggers keep the claim
listing current, and a workspace made with the first 0300 script upgrades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.web.conftest import Web

# What the first shipped 0300_web_auth script made for listings (replaced since).
FIRST_0300_LISTING = """
DROP TRIGGER web_claim_list_insert; DROP TRIGGER web_claim_list_update; DROP TABLE web_claim_list;
DROP INDEX trials_list; DROP INDEX trials_campaign_id; DROP INDEX trials_status_id;
CREATE INDEX trials_campaign_id ON trials(campaign_id, id);
CREATE INDEX trials_status_id ON trials(status, id);
CREATE INDEX claims_campaign_id ON claims(campaign_id, id);
CREATE INDEX claims_tier_id ON claims(tier, id);
DELETE FROM schema_migrations WHERE name = '0301_web_listings';
"""


def _listing(web: Web) -> dict[str, tuple[str, float | None]]:
    rows = web.store.list_claim_rows(limit=10_000).items
    return {r["id"]: (r["tier"], r["estimate"]) for r in rows}


def test_claim_listing_follows_every_claim_write(web: Web) -> None:
    claims = web.store.list_claims(limit=10_000).items
    expected = {c.id: (c.tier, c.effect.estimate if c.effect else None) for c in claims}
    assert _listing(web) == expected
    claim_id = web.claims("reproduced")[0]
    web.store.set_claim_tier(claim_id, "rejected")  # a write below the knowledge layer
    assert _listing(web)[claim_id][0] == "rejected"
    trials = web.store.list_trial_rows(campaign_id=web.campaign_id, limit=10_000).items
    assert sorted(t["id"] for t in trials) == sorted(
        t.id for t in web.store.list_trials(campaign_id=web.campaign_id, limit=10_000)
    )


def test_a_workspace_from_the_first_0300_script_upgrades(web: Web) -> None:
    before = _listing(web)
    path: Path = web.settings.db_path
    web.store.close()
    con = sqlite3.connect(path)
    con.executescript(FIRST_0300_LISTING)
    con.close()
    from medloop.core.store import SQLiteStore

    store = SQLiteStore(path)
    assert "0301_web_listings" in store.applied_migrations()
    web.store = store
    assert _listing(web) == before
    plan = store._q(
        "EXPLAIN QUERY PLAN SELECT id, updated_at FROM trials WHERE campaign_id = ? ORDER BY id", ("x",)
    )
    assert "COVERING INDEX trials_campaign_id" in " ".join(str(tuple(r)) for r in plan)
