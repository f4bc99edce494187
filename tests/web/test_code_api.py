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


HOSTILE_DOC = MODULE.replace(
    "Keep the prediction as it is.", "<script>alert(1)</script> keep it; see result.json"
)


def _code_claim(web: Web) -> tuple[str, str, str]:
    """A hypothesis and a supported claim about a module, in the template's campaign
    (owner alice). Returns (module sha, hypothesis id, claim id)."""
    from medloop.agents.claims import code_evidence
    from medloop.core.records import FactorChange, Hypothesis
    from medloop.engine.code import register
    from tests.contract.store.conftest import claim

    module = register(web.store, HOSTILE_DOC, name="ident", author="carol", campaign_id=web.campaign_id)
    change = FactorChange(factor="code_postprocess", from_value="none", to_value=module.sha256)
    hyp = Hypothesis(
        id="hyp_code", campaign_id=web.campaign_id, cycle=9, statement="ident helps", changes=[change]
    )
    web.store.cycles.put_hypothesis(hyp)
    c = claim("clm_code", campaign_id=web.campaign_id, tier="reproduced").model_copy(
        update={"hypothesis_id": hyp.id, "changes": [change], "author": "agent"}
    )
    web.store.claims.put([(c, code_evidence(c.id, hyp))])
    return module.sha256, hyp.id, c.id


def test_hypothesis_and_claim_pages_show_the_code_and_diff_escaped(web: Web) -> None:
    sha, hyp_id, claim_id = _code_claim(web)
    client, _ = web.login("bob")
    for url in (f"/hypotheses/{hyp_id}", f"/claims/{claim_id}"):
        html = client.get(url).text
        assert f"code-{sha[:12]}" in html and "code-diff" in html and "code-source" in html
        assert (
            "+EXTENSION_POINT = &#34;postprocess&#34;" in html
            or "+EXTENSION_POINT = &quot;postprocess&quot;" in html
        )
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
        assert "untrusted" in html and "flagged: line" in html and "result.json" in html
    api = web.client.get(f"/api/v1/claims/{claim_id}", headers=web.auth("vic")).json()
    assert api["code"][0]["sha256"] == sha and api["code"][0]["source"] == HOSTILE_DOC
    # the API gives the hypothesis with its code as well (before: the bare hypothesis only)
    detail = web.client.get(f"/api/v1/hypotheses/{hyp_id}/detail", headers=web.auth("vic")).json()
    assert detail["hypothesis"]["id"] == hyp_id
    assert detail["code"][0]["sha256"] == sha and detail["code"][0]["source"] == HOSTILE_DOC
    missing = web.client.get("/api/v1/hypotheses/hyp_nope/detail", headers=web.auth("vic"))
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def test_reviewers_validate_a_code_claim_and_quarantine_the_module(web: Web) -> None:
    sha, _, claim_id = _code_claim(web)
    body = {"rationale": "read the module and the diff; the effect is plausible"}
    r = web.client.post(f"/api/v1/claims/{claim_id}/validate", json=body, headers=web.auth("bob"))
    assert r.status_code == 200, r.text
    assert web.store.claims.get(claim_id).tier == "validated"
    q = web.client.post(
        "/api/v1/quarantines",
        json={"target": sha, "rationale": "the module has a bug"},
        headers=web.auth("bob"),
    )
    assert q.status_code in (200, 201), q.text
    assert web.store.claims.get(claim_id).tier == "quarantined"
