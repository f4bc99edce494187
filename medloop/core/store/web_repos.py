"""Web accounts (users, API tokens, dashboard sessions, rate limits), reviewers'
reproduction requests, and the tool library's ledger (per-caller charges, job handles)."""

from __future__ import annotations

import builtins
import time

import sqlalchemy as sa

from medloop.core.errors import ConflictError
from medloop.core.records import utcnow
from medloop.core.store import schema as s
from medloop.core.store.campaign_repos import one
from medloop.core.store.db import Database, given, select, update
from medloop.core.store.mapper import Mapper
from medloop.core.store.rows import (
    ApiToken,
    ReproductionRequest,
    RequestStatus,
    TokenLogin,
    ToolJob,
    User,
    WebSession,
)

_LOGIN = (
    sa.select(
        s.tokens.c.hash,
        s.tokens.c.revoked_at,
        s.tokens.c.expires_at,
        s.users.c.name,
        s.users.c.role,
        s.users.c.disabled_at,
    )
    .join(s.users, s.users.c.name == s.tokens.c.user_name)
    .where(s.tokens.c.id == sa.bindparam("id"))
)
USER = Mapper(User, s.users)
TOKEN = Mapper(ApiToken, s.tokens, columns={"user_name": "user"})
SESSION = Mapper(WebSession, s.sessions, columns={"user_name": "user"})
REQUEST = Mapper(ReproductionRequest, s.requests)
JOB = Mapper(ToolJob, s.tool_jobs, json={"json": "detail"})


class SqlUsers:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, user: User) -> None:
        if not self.db.put(s.users, [USER.row(user)]):
            raise ConflictError(
                f"user {user.name!r} exists", hint="create a token with `medloop users token`"
            )

    def get(self, name: str) -> User:
        hint = "add one with `medloop users add NAME --role ROLE`"
        return one(self.db, USER, name, f"user {name!r} not found", hint)

    def list(self) -> builtins.list[User]:
        return [USER.record(r) for r in self.db.all(select(s.users, order=("name",)))]

    def rate_hit(self, user: str, action: str, *, limit: int, window_s: float) -> float:
        r, now = s.rate_events, time.time()
        with self.db.transaction():
            self.db.write(sa.delete(r).where(r.c.at < now - window_s))
            stmt = select(r, ("user_name", "action"), cols=("at",), order=("at",))
            hits = self.db.all(stmt, {"user_name": user, "action": action})
            if len(hits) >= limit:
                return max(0.001, float(hits[0][0]) + window_s - now)
            self.db.write(sa.insert(r), {"user_name": user, "action": action, "at": now})
        return 0.0


class SqlTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, token: ApiToken) -> None:
        with self.db.transaction():
            SqlUsers(self.db).get(token.user)
            self.db.write(sa.insert(s.tokens), TOKEN.row(token))

    def get(self, token_id: str) -> ApiToken:
        return one(self.db, TOKEN, token_id, f"token {token_id} not found")

    def list(self, user: str | None = None) -> builtins.list[ApiToken]:
        where = given(user_name=user)
        return [
            TOKEN.record(r)
            for r in self.db.all(select(s.tokens, tuple(where), order=("created_at", "id")), where)
        ]

    def revoke(self, token_id: str) -> None:
        if not self.db.write(
            update(s.tokens, ("id",), unset=("revoked_at",)), {"revoked_at": utcnow(), "_id": token_id}
        ):
            self.get(token_id)  # NotFoundError if unknown; else it was revoked already

    def login(self, token_id: str) -> TokenLogin | None:
        rows = self.db.all(_LOGIN, {"id": token_id})
        return TokenLogin(*rows[0]) if rows else None


class SqlSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, session: WebSession) -> None:
        self.db.write(sa.insert(s.sessions), SESSION.row(session))

    def get(self, id_hash: str) -> WebSession:
        return one(self.db, SESSION, id_hash, "session not found")

    def revoke(self, id_hash: str) -> None:
        self.db.write(update(s.sessions, ("id_hash",)), {"revoked_at": utcnow(), "_id_hash": id_hash})


class SqlReviews:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, request: ReproductionRequest) -> None:
        self.db.write(sa.insert(s.requests), REQUEST.row(request))

    def get(self, request_id: str) -> ReproductionRequest:
        hint = "`medloop claims requests` lists them"
        return one(self.db, REQUEST, request_id, f"no reproduction request {request_id}", hint)

    def list(
        self, *, claim_id: str | None = None, status: str | None = None
    ) -> builtins.list[ReproductionRequest]:
        where = given(claim_id=claim_id, status=status)
        return [
            REQUEST.record(r)
            for r in self.db.all(select(s.requests, tuple(where), order=("created_at", "id")), where)
        ]

    def close(self, request_id: str, status: RequestStatus = "done") -> None:
        with self.db.transaction():
            current = self.get(request_id)
            if current.status == status:
                return  # a re-run after a crash
            if current.status != "open":
                raise ConflictError(f"reproduction request {request_id} is already {current.status}")
            self.db.write(update(s.requests, ("id",)), {"status": status, "_id": request_id})


class SqlLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    def charge(self, caller: str, resource: str, ref_id: str, amount: float, *, settle: bool = False) -> bool:
        c, now = s.charges, utcnow()
        row = {"caller": caller, "resource": resource, "ref_id": ref_id, "amount": float(amount)}
        return bool(
            self.db.put(
                c,
                [row | {"created_at": now, "updated_at": now}],
                set_=["amount", "updated_at"] if settle else (),
            )
        )

    def usage(self, caller: str, *, since: str = "") -> dict[str, float]:
        c = s.charges
        stmt = sa.select(c.c.resource, sa.func.sum(c.c.amount)).where(
            c.c.caller == caller, c.c.created_at >= since
        )
        return {r[0]: float(r[1] or 0.0) for r in self.db.all(stmt.group_by(c.c.resource))}

    def charges(self, caller: str, resource: str) -> dict[str, float]:
        stmt = select(s.charges, ("caller", "resource"), cols=("ref_id", "amount"), order=("ref_id",))
        return {r[0]: float(r[1]) for r in self.db.all(stmt, {"caller": caller, "resource": resource})}

    def put_job(self, job: ToolJob) -> bool:
        return bool(self.db.put(s.tool_jobs, [JOB.row(job)]))

    def get_job(self, handle: str) -> ToolJob:
        return one(self.db, JOB, handle, f"no tool job {handle}")

    def list_jobs(
        self, *, caller: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> builtins.list[ToolJob]:
        j, where = s.tool_jobs, given(caller=caller, kind=kind)
        stmt = select(j, tuple(where)).order_by(j.c.created_at.desc(), j.c.handle).limit(limit)
        return [JOB.record(r) for r in self.db.all(stmt, where)]
