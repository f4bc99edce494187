"""Audit chain, accounts, review requests and the tool ledger: every method, on every backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from medloop.core.accounts import ApiToken, ReproductionRequest, TokenLogin, ToolJob, User, WebSession
from medloop.core.errors import ConflictError, NotFoundError, StoreError
from medloop.core.ids import canonical_json, sha256_hex
from medloop.core.store import SqlStore
from medloop.core.store.migrate import HEAD
from tests.contract.store.conftest import StoreCase, claim

DETAIL = {"ünï": "códe ✓", "f": 0.1, "tiny": 2.5e-300, "big": 2**70, "n": [1, None, True], "lone": "\ud800"}


def test_audit_chain_is_the_0_1_0_hash_chain_and_refuses_changes(store: SqlStore) -> None:
    assert store.audit.head() == (0, "0" * 64)
    first = store.audit.append("alice", "claim.validate", "claim", "c1", DETAIL)
    more = store.audit.append_many([("bob", "x", "claim", "c2", {}), ("bob", "y", "trial", "t1", {"k": [1]})])
    entries = store.audit.list()
    assert entries == [first, *more] and [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].detail == DETAIL
    # The 0.1.0 rule, recomputed here independently: hash = sha256(prev + canonical body).
    prev = "0" * 64
    for e in entries:
        body = {
            "seq": e.seq,
            "ts": e.ts,
            "actor": e.actor,
            "action": e.action,
            "object_type": e.object_type,
            "object_id": e.object_id,
            "detail": e.detail,
        }
        assert e.prev_hash == prev and e.hash == sha256_hex(prev + canonical_json(body))
        prev = e.hash
    assert store.audit.verify() == (True, None) and store.audit.head() == (3, more[-1].hash)
    assert [e.seq for e in store.audit.list(object_id="c2")] == [2]
    assert [e.seq for e in store.audit.list(after=1, limit=1)] == [2]
    for sql in ("UPDATE audit SET actor = 'mallory' WHERE seq = 2", "DELETE FROM audit WHERE seq = 3"):
        with pytest.raises((StoreError, ConflictError), match="append-only"):
            store.db.write(sa.text(sql))
    assert store.audit.verify() == (True, None) and len(store.audit.list()) == 3


def test_users_tokens_sessions_and_rate_limits(store: SqlStore) -> None:
    alice = User(name="alice", role="reviewer")
    store.users.add(alice)
    store.users.add(User(name="Bob", role="viewer"))
    with pytest.raises(ConflictError, match="alice"):
        store.users.add(User(name="alice", role="admin"))
    assert store.users.get("alice") == alice and [u.name for u in store.users.list()] == ["Bob", "alice"]
    with pytest.raises(NotFoundError, match="'carol'"):
        store.users.get("carol")

    token = ApiToken(
        id="tok_1", user="alice", hash="h" * 64, label="ci", expires_at="2999-01-01T00:00:00+00:00"
    )
    store.tokens.add(token)
    store.tokens.add(ApiToken(id="tok_2", user="Bob", hash="g" * 64, created_at="2026-01-01T00:00:00+00:00"))
    with pytest.raises(NotFoundError, match="carol"):
        store.tokens.add(ApiToken(id="tok_3", user="carol", hash="x"))
    assert store.tokens.get("tok_1") == token
    assert [t.id for t in store.tokens.list()] == ["tok_2", "tok_1"] and [
        t.id for t in store.tokens.list("alice")
    ] == ["tok_1"]
    assert store.tokens.login("tok_1") == TokenLogin(
        "h" * 64, None, token.expires_at, "alice", "reviewer", None
    )
    assert store.tokens.login("tok_x") is None
    store.tokens.revoke("tok_1")
    revoked = store.tokens.get("tok_1").revoked_at
    store.tokens.revoke("tok_1")  # again: no change, no error
    assert revoked and store.tokens.get("tok_1").revoked_at == revoked
    with pytest.raises(NotFoundError):
        store.tokens.revoke("tok_x")

    session = WebSession(
        id_hash="s" * 64, user="alice", csrf="c" * 32, expires_at="2999-01-01T00:00:00+00:00"
    )
    store.sessions.add(session)
    assert store.sessions.get(session.id_hash) == session
    store.sessions.revoke(session.id_hash)
    assert store.sessions.get(session.id_hash).revoked_at is not None
    with pytest.raises(NotFoundError):
        store.sessions.get("nope")
    # Sessions remember their token: revoking it or disabling the user ends them in one write.
    for n, (user, tok) in enumerate(
        [("alice", "tok_1"), ("alice", "tok_1"), ("alice", None), ("Bob", "tok_2")]
    ):
        store.sessions.add(
            WebSession(
                id_hash=f"{n}" * 64,
                user=user,
                csrf="c",
                expires_at="2999-01-01T00:00:00+00:00",
                token_id=tok,
                created_at=f"2026-01-0{n + 1}T00:00:00+00:00",
            )
        )
    assert [s.id_hash[0] for s in store.sessions.list("alice")] == ["0", "1", "2", "s"]
    assert store.sessions.end(token_id="tok_1") == 2 and store.sessions.end(token_id="tok_1") == 0
    assert store.sessions.end(user="alice") == 1 and store.sessions.get("3" * 64).revoked_at is None
    assert all(s.revoked_at for s in store.sessions.list("alice")) and len(store.sessions.list()) == 5
    disabled = store.users.set_disabled("Bob", True)
    assert disabled.disabled_at is not None and store.users.set_disabled("Bob", True) == disabled
    assert store.tokens.login("tok_2") == TokenLogin(
        "g" * 64, None, None, "Bob", "viewer", disabled.disabled_at
    )
    assert store.users.set_disabled("Bob", False).disabled_at is None
    with pytest.raises(NotFoundError):
        store.users.set_disabled("carol", True)

    assert [store.users.rate_hit("alice", "review", limit=2, window_s=60) for _ in range(2)] == [0.0, 0.0]
    wait = store.users.rate_hit("alice", "review", limit=2, window_s=60)
    assert 0 < wait <= 60
    assert store.users.rate_hit("Bob", "review", limit=2, window_s=60) == 0.0  # counted per user
    assert store.users.rate_hit("alice", "review", limit=2, window_s=1e-9) == 0.0  # old hits expire


def test_reproduction_requests_close_once(store: SqlStore) -> None:
    store.claims.put([(claim("c1"), []), (claim("c2"), [])])
    r1 = ReproductionRequest(id="r1", claim_id="c1", actor="alice", rationale="again")
    store.reviews.add(r1)
    store.reviews.add(
        ReproductionRequest(
            id="r2", claim_id="c2", actor="bob", rationale="x", created_at="2000-01-01T00:00:00.000+00:00"
        )
    )
    with pytest.raises(ConflictError):
        store.reviews.add(ReproductionRequest(id="r3", claim_id="c9", actor="bob", rationale="no such claim"))
    assert store.reviews.get("r1") == r1 and [r.id for r in store.reviews.list()] == ["r2", "r1"]
    store.reviews.close("r1")
    store.reviews.close("r1")  # a re-run after a crash
    with pytest.raises(ConflictError, match="already done"):
        store.reviews.close("r1", "withdrawn")
    assert [r.id for r in store.reviews.list(status="open")] == ["r2"]
    assert [r.id for r in store.reviews.list(claim_id="c1", status="done")] == ["r1"]
    with pytest.raises(NotFoundError, match="r9"):
        store.reviews.get("r9")


def test_tool_ledger_charges_settle_and_jobs(store: SqlStore) -> None:
    led = store.ledger
    assert (
        led.charge("alice", "trials", "t1", 1.0) is True and led.charge("alice", "trials", "t1", 5.0) is False
    )
    assert led.charge("alice", "gpu_hours", "t1", 0.5) and led.charge(
        "alice", "gpu_hours", "t1", 0.25, settle=True
    )
    assert led.charge("alice", "gpu_hours", "t2", 1.0, settle=True)  # settling an unknown ref charges it
    led.charge("bob", "trials", "t3", 1.0)
    assert led.usage("alice") == {"trials": 1.0, "gpu_hours": 1.25} and led.usage("alice", since="2999") == {}
    assert led.charges("alice", "gpu_hours") == {"t1": 0.25, "t2": 1.0}
    job = ToolJob(
        handle="t1",
        kind="trial",
        caller="alice",
        ref_id="t1",
        detail={"seed": 3, "gpus": [0]},
        created_at="2026-01-01T00:00:00.000+00:00",
    )
    assert led.put_job(job) is True and led.put_job(job.model_copy(update={"detail": {}})) is False
    led.put_job(ToolJob(handle="c1", kind="campaign", caller="alice", ref_id="c1"))
    assert led.get_job("t1") == job
    assert [j.handle for j in led.list_jobs(caller="alice")] == ["c1", "t1"]
    assert [j.handle for j in led.list_jobs(kind="trial", limit=5)] == ["t1"] and led.list_jobs(
        caller="bob"
    ) == []
    with pytest.raises(NotFoundError):
        led.get_job("x")


def test_a_0002_store_gains_session_tokens(case: StoreCase) -> None:
    """Migration 0003 on each backend: a store left at 0002 (no token_id on sessions)."""
    store = case.open()
    store.users.add(User(name="alice", role="reviewer"))
    store.sessions.add(
        WebSession(id_hash="a" * 64, user="alice", csrf="c", expires_at="2999-01-01T00:00:00+00:00")
    )
    with store.db.transaction():
        for index in ("web_sessions_user", "web_sessions_token"):
            store.db.write(sa.text(f"DROP INDEX {index}"))
        store.db.write(sa.text("ALTER TABLE web_sessions DROP COLUMN token_id"))
        store.db.write(sa.text("DROP TABLE kb_code_modules"))  # 0004
        store.db.write(sa.text("UPDATE alembic_version SET version_num = '0002_repositories'"))
    store.close()
    upgraded = case.open()
    assert upgraded.sessions.get("a" * 64).token_id is None  # an old session survives
    assert upgraded.sessions.end(user="alice") == 1
    version = upgraded.db.all(sa.text("SELECT version_num FROM alembic_version"))
    assert version[0][0] == HEAD
    upgraded.close()
