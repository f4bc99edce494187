"""Hostile requests to the API (issue 14, items 14-18): each is refused fast with the JSON
error body, and nothing is written."""

from __future__ import annotations

import time

from tests.unit.test_safeyaml import billion_laughs
from tests.web import builders as B
from tests.web.conftest import Web


def _nothing_created(web: Web) -> None:
    assert [c.id for c in web.store.campaigns.list().items] == [web.campaign_id]


def test_billion_laughs_campaign_is_refused_in_bounded_cpu(web: Web) -> None:
    text = B.replay_yaml(web.table) + billion_laughs()
    start = time.process_time()  # the server runs in this process (TestClient)
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert time.process_time() - start < 5  # generous: on main this ran for over 10 minutes
    assert r.status_code == 422, r.text
    detail = r.json()["error"]["details"][0]
    assert detail["field"] == "yaml" and "anchors and aliases" in detail["message"]
    assert text.splitlines()[detail["line"] - 1].startswith("a: &a")
    _nothing_created(web)


def test_duplicate_keys_are_refused_with_the_line(web: Web) -> None:
    text = B.replay_yaml(web.table) + "name: second name\n"
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert r.status_code == 422
    detail = r.json()["error"]["details"][0]
    assert "duplicate key 'name' (first on line 1)" in detail["message"]
    assert detail["line"] == len(text.splitlines())
    _nothing_created(web)


def test_boolean_count_and_quadratic_duration_are_refused_fast(web: Web) -> None:
    text = B.replay_yaml(web.table).replace("max_cycles: 3", "max_cycles: 3, max_trials: true")
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    detail = r.json()["error"]["details"][0]
    assert (r.status_code, detail["field"]) == (422, "budget.max_trials")
    assert "expected a number, got true" in detail["message"]
    # '1' + spaces + 'x' made the duration regex backtrack quadratically (minutes of CPU)
    slow = B.replay_yaml(web.table).replace(
        "max_cycles: 3", "max_cycles: 3, max_wall: '1" + " " * 150_000 + "x'"
    )
    start = time.process_time()
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": slow}, headers=web.auth("bob"))
    assert time.process_time() - start < 5
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "budget.max_wall"
    _nothing_created(web)
