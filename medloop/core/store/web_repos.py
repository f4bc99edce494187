"""Web accounts (users, API tokens, dashboard sessions, rate limits), reviewers'
reproduction requests, and the tool library's ledger (per-caller charges, job handles)."""

from __future__ import annotations

import builtins
import time

import sqlalchemy as sa

from medloop.core import accounts as a
from medloop.core.errors import ConflictError
from medloop.core.records import utcnow
from medloop.core.store import schema as s
from medloop.core.store.base import Filter
from medloop.core.store.db import Database, Repo, given, matching, one, select, update
from medloop.core.store.mapper import Mapper

USER = Mapper(a.User, s.users)
TOKEN = Mapper(a.ApiToken, s.tokens, columns={"user_name": "user"})
SESSION = Mapper(a.WebSession, s.sessions, columns={"user_name": "user"})
REQUEST = Mapper(a.ReproductionRequest, s.requests)
JOB = Mapper(a.ToolJob, s.tool_jobs, json={"json": "detail"})
_t, _u = s.tokens.c, s.users.c
_LOGIN = (
    sa.select(_t.hash, _t.revoked_at, _t.expires_at, _u.name, _u.role, _u.disabled_at)
    .join(s.users, _u.name == _t.user_name)
    .where(_t.id == sa.bindparam("id"))
)


class SqlUsers(Repo[a.User]):
    mapper, missing, hint = (
        USER,
        "user {key!r} not found",
        "add one with `medloop users add NAME --role ROLE`",
    )

    def add(self, user: a.User) -> None:
        if not self.db.put(s.users, [USER.row(user)]):
            raise ConflictError(
                f"user {user.name!r} exists", hint="create a token with `medloop users token`"
            )

    def list(self) -> builtins.list[a.User]:
        return matching(self.db, USER, ("name",))

    def set_disabled(self, name: str, disabled: bool) -> a.User:
        """Disable (now) or enable a user; again is a no-op. NotFoundError if unknown."""
        with self.db.transaction():
            user = self.get(name)
            if (user.disabled_at is not None) != disabled:
                stamp = utcnow() if disabled else None
                self.db.write(update(s.users, ("name",)), {"disabled_at": stamp, "_name": name})
            return self.get(name)

    def rate_hit(self, user: str, action: str, *, limit: int, window_s: float, peek: bool = False) -> float:
        r, now = s.rate_events, time.time()
        key = {"user_name": user, "action": action}
        if peek:  # read only: no write on the path every request takes
            stmt = sa.select(r.c.at).where(
                r.c.user_name == user, r.c.action == action, r.c.at >= now - window_s
            )
            hits = self.db.all(stmt.order_by(r.c.at))
            return max(0.001, float(hits[0][0]) + window_s - now) if len(hits) >= limit else 0.0
        with self.db.transaction():
            # Only this action's old hits: each action has its own window.
            self.db.write(sa.delete(r).where(r.c.action == action, r.c.at < now - window_s))
            stmt = select(r, ("user_name", "action"), cols=("at",), order=("at",))
            hits = self.db.all(stmt, key)
            if len(hits) >= limit:
                return max(0.001, float(hits[0][0]) + window_s - now)
            self.db.write(sa.insert(r), key | {"at": now})
        return 0.0


class SqlTokens(Repo[a.ApiToken]):
    mapper, missing = TOKEN, "token {key} not found"

    def add(self, token: a.ApiToken) -> None:
        with self.db.transaction():
            SqlUsers(self.db).get(token.user)
            super().add(token)

    def list(self, user: Filter = None) -> builtins.list[a.ApiToken]:
        return matching(self.db, TOKEN, ("created_at", "id"), user_name=user)

    def revoke(self, token_id: str) -> None:
        if not self.db.write(
            update(s.tokens, ("id",), unset=("revoked_at",)), {"revoked_at": utcnow(), "_id": token_id}
        ):
            self.get(token_id)  # NotFoundError if unknown; else it was revoked already

    def login(self, token_id: str) -> a.TokenLogin | None:
        rows = self.db.all(_LOGIN, {"id": token_id})
        return a.TokenLogin(*rows[0]) if rows else None


class SqlSessions(Repo[a.WebSession]):
    mapper, missing = SESSION, "session not found"

    def list(self, user: Filter = None) -> builtins.list[a.WebSession]:
        return matching(self.db, SESSION, ("created_at", "id_hash"), user_name=user)

    def revoke(self, id_hash: str) -> None:
        self.db.write(update(s.sessions, ("id_hash",)), {"revoked_at": utcnow(), "_id_hash": id_hash})

    def end(self, *, user: str | None = None, token_id: str | None = None) -> int:
        """Revoke every open session of `user` or of `token_id`; returns how many."""
        if (user is None) == (token_id is None):
            raise ValueError("end sessions of one user or of one token")
        where = ("user_name",) if user is not None else ("token_id",)
        key = {"_user_name": user} if user is not None else {"_token_id": token_id}
        return self.db.write(
            update(s.sessions, where, unset=("revoked_at",)), {"revoked_at": utcnow(), **key}
        )


class SqlReviews(Repo[a.ReproductionRequest]):
    mapper, missing, hint = REQUEST, "no reproduction request {key}", "`medloop claims requests` lists them"

    def list(self, *, claim_id: Filter = None, status: Filter = None) -> builtins.list[a.ReproductionRequest]:
        return matching(self.db, REQUEST, ("created_at", "id"), claim_id=claim_id, status=status)

    def close(self, request_id: str, status: a.RequestStatus = "done") -> None:
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
        now = utcnow()
        row = {"caller": caller, "resource": resource, "ref_id": ref_id, "amount": float(amount)}
        set_ = ("amount", "updated_at") if settle else ()
        return bool(self.db.put(s.charges, [row | {"created_at": now, "updated_at": now}], set_=set_))

    def usage(self, caller: str, *, since: str = "") -> dict[str, float]:
        c = s.charges
        stmt = sa.select(c.c.resource, sa.func.sum(c.c.amount)).where(
            c.c.caller == caller, c.c.created_at >= since
        )
        return {r[0]: float(r[1] or 0.0) for r in self.db.all(stmt.group_by(c.c.resource))}

    def charges(self, caller: str, resource: str) -> dict[str, float]:
        stmt = select(s.charges, ("caller", "resource"), cols=("ref_id", "amount"), order=("ref_id",))
        return {r[0]: float(r[1]) for r in self.db.all(stmt, {"caller": caller, "resource": resource})}

    def put_job(self, job: a.ToolJob) -> bool:
        return bool(self.db.put(s.tool_jobs, [JOB.row(job)]))

    def get_job(self, handle: str) -> a.ToolJob:
        return one(self.db, JOB, handle, f"no tool job {handle}")

    def list_jobs(
        self, *, caller: Filter = None, kind: Filter = None, limit: int = 1000
    ) -> builtins.list[a.ToolJob]:
        j, where = s.tool_jobs, given(caller=caller, kind=kind)
        stmt = select(j, tuple(where)).order_by(j.c.created_at.desc(), j.c.handle).limit(limit)
        return [JOB.record(r) for r in self.db.all(stmt, where)]
