"""Issue 14 item 19: a dashboard session lives no longer than the token and the user it
came from. Revoking the token, disabling the user or ending the user's sessions stops
every request of the session at once, CSRF-protected changes included."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from medloop.web.accounts import end_sessions, issue_token, revoke_token, set_disabled
from tests.web.conftest import Web
from tests.web.test_pages_cli import _cli

RATIONALE = "Reproduced with fresh seeds; the CI excludes zero."


def _login(web: Web, secret: str) -> tuple[TestClient, str]:
    client = TestClient(web.app)
    nonce = re.search(r'name="nonce" value="([^"]+)"', client.get("/login").text)
    assert nonce is not None
    r = client.post("/login", data={"nonce": nonce.group(1), "token": secret, "next": "/"})
    assert r.status_code == 200, r.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', r.text)
    assert csrf is not None
    return client, csrf.group(1)


def _works(client: TestClient, csrf: str, claim_id: str) -> tuple[int, int]:
    """(status of a read, status of a CSRF-protected change) for this session."""
    read = client.get("/api/v1/me").status_code
    change = client.post(
        f"/api/v1/claims/{claim_id}/request-reproduction",
        json={"rationale": RATIONALE},
        headers={"X-CSRF-Token": csrf},
    ).status_code
    return read, change


def test_revoking_a_token_ends_the_sessions_opened_with_it(web: Web) -> None:
    token, secret = issue_token(web.store, "bob", actor="test", label="laptop")
    client, csrf = _login(web, secret)
    keep, _ = web.login("bob")
    claim_id = web.claims("reproduced")[0]
    assert _works(client, csrf, claim_id) == (200, 200)
    assert revoke_token(web.store, token.id, actor="ada") == 1
    # The attack: keep using the cookie after the token was revoked (a stolen laptop).
    assert _works(client, csrf, claim_id) == (401, 401)
    assert client.get("/", follow_redirects=False).status_code == 303  # the dashboard asks for a login
    # Sessions opened with bob's other tokens go on.
    assert keep.get("/api/v1/me").json()["name"] == "bob"
    revoked = [e for e in web.store.audit.list(limit=100_000) if e.action == "token.revoke"][-1]
    assert revoked.detail == {"token": token.id, "sessions_ended": 1}


def test_a_session_ends_with_its_token_even_if_the_row_was_not_ended(web: Web) -> None:
    """Defence in depth: a session is checked against its token on every request."""
    token, secret = issue_token(web.store, "bob", actor="test")
    client, _ = _login(web, secret)
    web.store.tokens.revoke(token.id)  # revoked without ending its sessions (e.g. by hand in SQL)
    assert client.get("/api/v1/me").status_code == 401


def test_a_session_expires_with_its_token(web: Web) -> None:
    _, secret = issue_token(web.store, "bob", actor="test", expires_days=0.01)  # ~14 minutes
    _login(web, secret)
    (session,) = [s for s in web.store.sessions.list("bob") if s.revoked_at is None]
    token = web.store.tokens.get(session.token_id or "")
    assert session.expires_at == token.expires_at  # not the 12 h of a session


def test_disabling_a_user_stops_tokens_sessions_and_logins_at_once(web: Web) -> None:
    client, csrf = web.login("bob")
    claim_id = web.claims("reproduced")[0]
    assert _works(client, csrf, claim_id) == (200, 200)
    user, ended = set_disabled(web.store, "bob", True, actor="ada")
    assert user.disabled_at is not None and ended == 1
    assert _works(client, csrf, claim_id) == (401, 401)
    assert web.client.get("/api/v1/me", headers=web.auth("bob")).status_code == 401
    nonce = re.search(r'name="nonce" value="([^"]+)"', web.client.get("/login").text)
    assert nonce is not None
    again = web.client.post("/login", data={"nonce": nonce.group(1), "token": web.tokens["bob"]})
    assert again.status_code == 401 and "disabled" in again.text
    set_disabled(web.store, "bob", False, actor="ada")
    assert web.client.get("/api/v1/me", headers=web.auth("bob")).status_code == 200
    assert client.get("/api/v1/me").status_code == 401  # ended sessions stay ended


def test_ending_a_users_sessions(web: Web) -> None:
    a, _ = web.login("bob")
    b, _ = web.login("bob")
    alice, _ = web.login("alice")
    assert end_sessions(web.store, "bob", actor="ada") == 2
    assert a.get("/api/v1/me").status_code == b.get("/api/v1/me").status_code == 401
    assert alice.get("/api/v1/me").status_code == 200
    assert end_sessions(web.store, "bob", actor="ada") == 0


def test_cli_disable_sessions_and_end(web: Web) -> None:
    client, _ = web.login("alice")
    listed = _cli(web, "users", "sessions", "alice", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["state"] for r in rows] == ["open"] and rows[0]["token_id"].startswith("tok_")
    ended = _cli(web, "users", "sessions", "alice", "--end")
    assert ended.returncode == 0 and "1 dashboard session(s) of alice ended" in ended.stdout
    assert client.get("/api/v1/me").status_code == 401
    assert [r["state"] for r in json.loads(_cli(web, "users", "sessions", "alice", "--json").stdout)] == [
        "ended"
    ]

    client, _ = web.login("bob")
    disabled = _cli(web, "users", "disable", "bob")
    assert disabled.returncode == 0 and "1 dashboard session(s) ended" in disabled.stdout
    assert client.get("/api/v1/me").status_code == 401
    assert web.client.get("/api/v1/me", headers=web.auth("bob")).status_code == 401
    listed_users = {u["name"]: u for u in json.loads(_cli(web, "users", "list", "--json").stdout)}
    assert listed_users["bob"]["disabled_at"] is not None
    assert _cli(web, "users", "enable", "bob").returncode == 0
    assert web.client.get("/api/v1/me", headers=web.auth("bob")).status_code == 200
    unknown = _cli(web, "users", "disable", "nobody")
    assert unknown.returncode != 0 and "nobody" in unknown.stderr and "Traceback" not in unknown.stderr
    actions = [e.action for e in web.store.audit.list(limit=100_000)]
    assert {"session.end", "user.disable", "user.enable"} <= set(actions)
