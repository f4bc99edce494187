"""Issue 14 item 21: failed logins and refused actions are audited (never the secret
tried) and throttled: per client address (a hard block for one window), per account
(wrong secrets get 429, the right token still works: no lock-out), and per user for
refused actions (403 -> 429)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from medloop.web.app import create_app
from medloop.web.context import RateLimit
from tests.web.conftest import Web

RATIONALE = "Reproduced with fresh seeds; the CI excludes zero."


def _app(web: Web, **settings: Any) -> Any:
    return create_app(
        web.settings.model_copy(update=settings), review_limit=RateLimit(count=1000, window_s=60)
    )


def _client(app: Any, addr: str) -> TestClient:
    return TestClient(app, client=(addr, 40000))


def _entries(web: Web, action: str) -> list[Any]:
    return [e for e in web.store.audit.list(limit=1_000_000) if e.action == action]


def test_failed_logins_from_one_address_are_audited_then_blocked(web: Web) -> None:
    app = _app(web, login_failures_per_address=3, login_window=600.0)
    attacker, neighbour = _client(app, "203.0.113.7"), _client(app, "198.51.100.2")
    bob_token_id = web.tokens["bob"].split(".")[0]
    guesses = [f"{bob_token_id}.guess0", "tok_unknown.secretvalue", "not-a-token-but-a-secret"]
    for guess in guesses:
        r = attacker.get("/api/v1/me", headers={"Authorization": f"Bearer {guess}"})
        assert r.status_code == 401
    # Blocked now, even with a valid token, for this address only.
    blocked = attacker.get("/api/v1/me", headers=web.auth("vic"))
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert neighbour.get("/api/v1/me", headers=web.auth("vic")).status_code == 200
    fails = _entries(web, "auth.fail")
    assert len(fails) == 3 and {e.detail["address"] for e in fails} == {"203.0.113.7"}
    assert (fails[0].actor, fails[0].object_type, fails[0].detail["token"]) == ("bob", "user", bob_token_id)
    assert "token" not in fails[2].detail  # a malformed value may be a secret: nothing of it is kept
    text = repr([e.model_dump() for e in web.store.audit.list(limit=1_000_000)])
    assert "guess0" not in text and "secretvalue" not in text and "not-a-token" not in text
    (throttle,) = _entries(web, "auth.throttle")
    assert throttle.object_type == "address" and throttle.object_id == "203.0.113.7"
    # Refused attempts are neither counted nor audited (no audit flood).
    for _ in range(5):
        attacker.get("/api/v1/me", headers={"Authorization": "Bearer tok_x.y"})
    assert len(_entries(web, "auth.fail")) == 3


def test_an_attacked_account_keeps_working_for_its_owner(web: Web) -> None:
    app = _app(web, login_failures_per_account=2, login_failures_per_address=100)
    bob_token_id = web.tokens["bob"].split(".")[0]
    codes = [
        _client(app, f"192.0.2.{n}")
        .get("/api/v1/me", headers={"Authorization": f"Bearer {bob_token_id}.wrong{n}"})
        .status_code
        for n in range(5)
    ]
    assert codes == [401, 401, 429, 429, 429]  # from five addresses: the account's own limit
    assert len(_entries(web, "auth.fail")) == 2 and _entries(web, "auth.throttle")[0].object_id == "bob"
    # No lock-out: the right token works from anywhere, even the attacker's addresses.
    assert _client(app, "192.0.2.3").get("/api/v1/me", headers=web.auth("bob")).json()["name"] == "bob"


def test_the_login_form_is_throttled_too(web: Web) -> None:
    app = _app(web, login_failures_per_address=2)
    client = _client(app, "203.0.113.9")

    def attempt(token: str) -> Any:
        nonce = re.search(r'name="nonce" value="([^"]+)"', client.get("/login").text)
        assert nonce is not None
        return client.post("/login", data={"nonce": nonce.group(1), "token": token}, follow_redirects=False)

    assert [attempt("tok_abc.def").status_code for _ in range(2)] == [401, 401]
    limited = attempt(web.tokens["bob"])
    assert limited.status_code == 429 and "too many failed logins" in limited.text
    assert int(limited.headers["Retry-After"]) > 0 and "medloop_session" not in limited.cookies
    assert [e.detail["via"] for e in _entries(web, "auth.fail")] == ["login", "login"]


def test_refused_actions_are_audited_and_throttled(web: Web) -> None:
    app = _app(web, refusals_per_user=3)
    client = TestClient(app)
    claim_id = web.claims("reproduced")[0]
    url = f"/api/v1/claims/{claim_id}/validate"
    # A viewer may not validate; alice owns the campaign (self-validation).
    r = client.post(url, json={"rationale": RATIONALE}, headers=web.auth("vic"))
    assert r.status_code == 403
    r = client.post(url, json={"rationale": RATIONALE}, headers=web.auth("alice"))
    assert r.status_code == 403
    assert client.get("/api/v1/users", headers=web.auth("vic")).status_code == 403
    denied = _entries(web, "access.denied")
    assert [(e.actor, e.object_id) for e in denied] == [
        ("vic", f"review:{claim_id}"),
        ("alice", f"review:{claim_id}"),
        ("vic", "GET /api/v1/users"),
    ]
    assert "own campaign" in denied[1].detail["message"]
    # vic's third refusal in a minute is audited; after that: 429, nothing more written.
    codes = [client.get("/api/v1/users", headers=web.auth("vic")).status_code for _ in range(3)]
    assert codes == [403, 429, 429] and len(_entries(web, "access.denied")) == 4


def test_csrf_failures_and_dashboard_refusals_are_audited(web: Web) -> None:
    client, csrf = web.login("alice")
    claim_id = web.claims("reproduced")[0]
    r = client.post(f"/api/v1/claims/{claim_id}/request-reproduction", json={"rationale": RATIONALE})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
    own = client.post(
        f"/claims/{claim_id}/review", data={"action": "validate", "rationale": RATIONALE, "csrf": csrf}
    )
    assert "refused" in own.text
    denied = _entries(web, "access.denied")
    assert [e.actor for e in denied] == ["alice", "alice"]
    assert "CSRF" in denied[0].detail["message"] and denied[1].object_id == f"review:{claim_id}"
