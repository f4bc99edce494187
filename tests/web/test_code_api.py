"""POST /api/v1/campaigns/{id}/code: a person's code hypothesis through the API. Only the
campaign's owner (a reviewer) or an admin may add one; hostile input (a syntax error, a
forbidden import, an oversized body, an unknown point, a point the campaign does not open)
is one clear error and stores nothing; a stored module is queued and shown on the pages."""

from __future__ import annotations

from tests.web import builders as B
from tests.web.conftest import Web

MODULE = '''"""Keep the prediction as it is."""
import numpy as np

EXTENSION_POINT = "postprocess"


def postprocess(label_map, spacing, labels):
    return np.asarray(label_map)
'''


def _code_campaign(web: Web, owner: str = "alice") -> str:
    text = B.replay_yaml(web.table, name="code campaign", max_cycles=1) + "code: {points: [postprocess]}\n"
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth(owner))
    assert r.status_code == 201, r.text
    return str(r.json()["campaign"]["id"])


def test_the_owner_adds_a_code_hypothesis(web: Web) -> None:
    cid = _code_campaign(web)
    body = {"source": MODULE, "point": "postprocess", "rationale": "identity, a control", "name": "ident"}
    r = web.client.post(f"/api/v1/campaigns/{cid}/code", json=body, headers=web.auth("alice"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["point"] == "postprocess" and out["author"] == "alice" and out["trusted"] is False
    module, source = web.store.code.get(out["sha256"])
    assert source == MODULE and module.campaign_id == cid and module.author_kind == "human"
    assert [e.action for e in web.store.audit.list(object_id=cid)][-1] == "code.add"


def test_others_may_not_add_code_to_a_campaign(web: Web) -> None:
    cid = _code_campaign(web)
    body = {"source": MODULE, "point": "postprocess"}
    for user in ("bob", "vic", "agt"):  # another reviewer, a viewer, the agent
        r = web.client.post(f"/api/v1/campaigns/{cid}/code", json=body, headers=web.auth(user))
        assert r.status_code == 403, (user, r.text)
    assert web.client.post(f"/api/v1/campaigns/{cid}/code", json=body).status_code == 401
    assert not [m for m in web.store.code.list() if m.campaign_id == cid]


def test_hostile_code_is_one_clear_error_and_stores_nothing(web: Web) -> None:
    cid = _code_campaign(web)
    url = f"/api/v1/campaigns/{cid}/code"
    cases = [
        ({"source": MODULE.replace("return np", "return (np"), "point": "postprocess"}, 422, "syntax error"),
        ({"source": "import socket\n" + MODULE, "point": "postprocess"}, 422, "imports 'socket'"),
        ({"source": MODULE, "point": "optimizer"}, 422, "point"),
        ({"source": MODULE, "point": "loss"}, 422, "does not open extension point 'loss'"),
        ({"source": MODULE, "point": "postprocess", "tier": "validated"}, 422, "tier"),
        ({"source": "x" * 70_000, "point": "postprocess"}, 422, "source"),
        ({"source": MODULE, "point": "postprocess", "name": "../../etc"}, 422, "name"),
    ]
    for body, status, needle in cases:
        r = web.client.post(url, json=body, headers=web.auth("alice"))
        assert r.status_code == status, (body.get("point"), r.text)
        err = r.json()["error"]
        assert set(r.json()) == {"error"} and needle in (err["message"] + str(err.get("details", "")))
    big = web.client.post(url, content=b"{" + b" " * 1_100_000 + b"}", headers=web.auth("alice"))
    assert big.status_code == 413
    assert [m for m in web.store.code.list() if m.campaign_id == cid] == []
    unknown = web.client.post("/api/v1/campaigns/cmp_nope/code", json=cases[0][0], headers=web.auth("ada"))
    assert unknown.status_code == 404
