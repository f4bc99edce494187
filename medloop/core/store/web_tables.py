"""SQLite tables of the web layer (migration 0300): users, API tokens, dashboard sessions,
rate-limit events, plus column-only listings that let the API
page through 10k trials or claims without parsing every record's JSON.

Secrets are never stored: tokens and session ids are kept as SHA-256 hashes (they are
256-bit random values, so a plain hash is enough; no password stretching is needed).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Protocol, TypedDict

from pydantic import Field

from medloop.core.errors import ConflictError, NotFoundError
from medloop.core.records import Record, Tier, utcnow
from medloop.core.store.base import Page, Store
from medloop.core.store.review_tables import ReviewStore
from medloop.core.store.sqlite_base import SQLiteBase

Role = Literal["viewer", "reviewer", "admin", "agent"]


class User(Record):
    name: str
    role: Role
    created_at: str = Field(default_factory=utcnow)
    disabled_at: str | None = None


class ApiToken(Record):
    """An API token without its secret: `hash` is sha256 of the secret part."""

    id: str
    user: str
    hash: str
    label: str = ""
    created_at: str = Field(default_factory=utcnow)
    expires_at: str | None = None
    revoked_at: str | None = None


class WebSession(Record):
    """A dashboard login. `id_hash` is sha256 of the cookie value; `csrf` goes in forms."""

    id_hash: str
    user: str
    csrf: str
    created_at: str = Field(default_factory=utcnow)
    expires_at: str
    revoked_at: str | None = None


class TrialRow(Record):
    """A trial's listing columns (no spec or result JSON)."""

    id: str
    campaign_id: str
    hypothesis_id: str | None
    arm: str
    seed: int
    status: str
    objective: float | None
    created_at: str
    updated_at: str


class ClaimRow(Record):
    """A claim's listing columns, with the effect pulled out of its JSON by SQLite."""

    id: str
    campaign_id: str | None
    hypothesis_id: str | None
    tier: Tier
    outcome: str
    dataset: str
    statement: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_adjusted: float | None
    author: str
    created_at: str
    updated_at: str


class TokenLogin(NamedTuple):
    """What checking a token needs, in one query (every API request does it)."""

    hash: str
    revoked_at: str | None
    expires_at: str | None
    user: str
    role: str
    disabled_at: str | None


class TrialListing(TypedDict):
    """A `TrialRow` as a plain dict: listings skip record validation (it costs more than
    the query for a page of 50)."""

    id: str
    campaign_id: str
    hypothesis_id: str | None
    arm: str
    seed: int
    status: str
    objective: float | None
    created_at: str
    updated_at: str


class ClaimListing(TypedDict):
    """A `ClaimRow` as a plain dict."""

    id: str
    campaign_id: str | None
    hypothesis_id: str | None
    tier: str
    outcome: str
    dataset: str
    statement: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_adjusted: float | None
    author: str
    created_at: str
    updated_at: str


class WebStore(Protocol):
    """What the web layer needs beyond `Store`."""

    def add_user(self, user: User) -> None: ...
    def get_user(self, name: str) -> User: ...
    def list_users(self) -> list[User]: ...
    def add_token(self, token: ApiToken) -> None: ...
    def get_token(self, token_id: str) -> ApiToken: ...
    def revoke_token(self, token_id: str) -> None: ...
    def token_login(self, token_id: str) -> TokenLogin | None: ...
    def list_tokens(self, user: str | None = None) -> list[ApiToken]: ...
    def add_session(self, session: WebSession) -> None: ...
    def get_session(self, id_hash: str) -> WebSession: ...
    def revoke_session(self, id_hash: str) -> None: ...
    def rate_hit(self, user: str, action: str, *, limit: int, window_s: float) -> float: ...
    def list_trial_rows(
        self,
        *,
        campaign_id: str | None = None,
        hypothesis_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[TrialListing]: ...
    def list_claim_rows(
        self,
        *,
        tiers: Sequence[str] | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        campaign_id: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[ClaimListing]: ...
    def trial_counts(self, campaign_id: str) -> dict[str, int]: ...
    def trial_curve(self, campaign_id: str) -> list[tuple[str, str, str, float | None]]: ...
    def recent_trials(self, campaign_id: str, limit: int = 30) -> list[TrialListing]: ...
    def campaign_progress(self, campaign_id: str) -> dict[str, Any]: ...


class AppStore(Store, WebStore, ReviewStore, Protocol):
    """The store the web layer is given: `Store` + `WebStore` + `ReviewStore` + the audit check."""

    def verify_audit(self) -> tuple[bool, int | None]: ...


_TRIAL_COLS = "id, campaign_id, hypothesis_id, arm, seed, status, objective, created_at, updated_at"
_TRIAL_KEYS = tuple(k.strip() for k in _TRIAL_COLS.split(","))
_CLAIM_KEYS = (
    "id",
    "campaign_id",
    "hypothesis_id",
    "tier",
    "outcome",
    "dataset",
    "statement",
    "created_at",
    "updated_at",
    "estimate",
    "ci_low",
    "ci_high",
    "p_adjusted",
    "author",
)
# From web_claim_list, the listing copy of the claims table (kept by triggers).
_CLAIM_COLS = "claim_id, " + ", ".join(_CLAIM_KEYS[1:])


def _trial_listing(row: tuple[Any, ...]) -> TrialListing:
    out: TrialListing = dict(zip(_TRIAL_KEYS, row, strict=True))  # type: ignore[assignment]
    return out


def _claim_listing(row: tuple[Any, ...]) -> ClaimListing:
    out: ClaimListing = dict(zip(_CLAIM_KEYS, row, strict=True))  # type: ignore[assignment]
    return out


class WebTablesMixin(SQLiteBase):
    """Mixed into `SQLiteStore`; relies on its connection, lock and query helpers."""

    # ------------------------------------------------------------ users and tokens

    def add_user(self, user: User) -> None:
        n = self._x(
            "INSERT OR IGNORE INTO web_users VALUES (?,?,?,?)",
            (user.name, user.role, user.created_at, user.disabled_at),
        )
        if n == 0:
            raise ConflictError(
                f"user {user.name!r} exists", hint="create a token with `medloop users token`"
            )

    def _user(self, r: sqlite3.Row) -> User:
        return User(name=r["name"], role=r["role"], created_at=r["created_at"], disabled_at=r["disabled_at"])

    def get_user(self, name: str) -> User:
        rows = self._q("SELECT * FROM web_users WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(
                f"user {name!r} not found", hint="add one with `medloop users add NAME --role ROLE`"
            )
        return self._user(rows[0])

    def list_users(self) -> list[User]:
        return [self._user(r) for r in self._q("SELECT * FROM web_users ORDER BY name")]

    def add_token(self, token: ApiToken) -> None:
        self.get_user(token.user)
        self._x(
            "INSERT INTO web_tokens VALUES (?,?,?,?,?,?,?)",
            (
                token.id,
                token.user,
                token.hash,
                token.label,
                token.created_at,
                token.expires_at,
                token.revoked_at,
            ),
        )

    def _token(self, r: sqlite3.Row) -> ApiToken:
        return ApiToken(
            id=r["id"],
            user=r["user_name"],
            hash=r["hash"],
            label=r["label"],
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            revoked_at=r["revoked_at"],
        )

    def get_token(self, token_id: str) -> ApiToken:
        rows = self._q("SELECT * FROM web_tokens WHERE id = ?", (token_id,))
        if not rows:
            raise NotFoundError(f"token {token_id} not found")
        return self._token(rows[0])

    def revoke_token(self, token_id: str) -> None:
        n = self._x(
            "UPDATE web_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utcnow(), token_id)
        )
        if n == 0:
            self.get_token(token_id)  # NotFoundError if unknown; else it was revoked already

    def token_login(self, token_id: str) -> TokenLogin | None:
        rows = self._conn_rows(
            "SELECT t.hash, t.revoked_at, t.expires_at, u.name, u.role, u.disabled_at "
            "FROM web_tokens t JOIN web_users u ON u.name = t.user_name WHERE t.id = ?",
            (token_id,),
        )
        return TokenLogin(*rows[0]) if rows else None

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        if user is None:
            rows = self._q("SELECT * FROM web_tokens ORDER BY created_at")
        else:
            rows = self._q("SELECT * FROM web_tokens WHERE user_name = ? ORDER BY created_at", (user,))
        return [self._token(r) for r in rows]

    # ------------------------------------------------------------ sessions

    def add_session(self, session: WebSession) -> None:
        self._x(
            "INSERT INTO web_sessions VALUES (?,?,?,?,?,?)",
            (
                session.id_hash,
                session.user,
                session.csrf,
                session.created_at,
                session.expires_at,
                session.revoked_at,
            ),
        )

    def get_session(self, id_hash: str) -> WebSession:
        rows = self._q("SELECT * FROM web_sessions WHERE id_hash = ?", (id_hash,))
        if not rows:
            raise NotFoundError("session not found")
        r = rows[0]
        return WebSession(
            id_hash=r["id_hash"],
            user=r["user_name"],
            csrf=r["csrf"],
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            revoked_at=r["revoked_at"],
        )

    def revoke_session(self, id_hash: str) -> None:
        self._x("UPDATE web_sessions SET revoked_at = ? WHERE id_hash = ?", (utcnow(), id_hash))

    # ------------------------------------------------------------ rate limits

    def rate_hit(self, user: str, action: str, *, limit: int, window_s: float) -> float:
        """Count one `action` by `user` if fewer than `limit` happened in the last
        `window_s` seconds. Returns 0.0 if counted, else the seconds until one frees up.
        Shared by every server process that opens this store."""
        now = time.time()
        with self.transaction():
            self._x("DELETE FROM web_rate_events WHERE at < ?", (now - window_s,))
            rows = self._q(
                "SELECT at FROM web_rate_events WHERE user_name = ? AND action = ? ORDER BY at",
                (user, action),
            )
            if len(rows) >= limit:
                return max(0.001, float(rows[0]["at"]) + window_s - now)
            self._x("INSERT INTO web_rate_events VALUES (?,?,?)", (user, action, now))
        return 0.0

    # ------------------------------------------------------------ column-only listings

    def list_trial_rows(
        self,
        *,
        campaign_id: str | None = None,
        hypothesis_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[TrialListing]:
        """Same order and cursor as `Store.list_trials` (by id)."""
        sql, params = f"SELECT {_TRIAL_COLS} FROM trials WHERE 1=1", list[Any]()
        for column, value in (
            ("campaign_id", campaign_id),
            ("hypothesis_id", hypothesis_id),
            ("status", status),
        ):
            if value is not None:
                sql, params = sql + f" AND {column} = ?", [*params, value]
        if after:
            sql, params = sql + " AND id > ?", [*params, after]
        rows = self._conn_rows(sql + " ORDER BY id LIMIT ?", (*params, limit + 1))
        items = [_trial_listing(r) for r in rows[:limit]]
        return Page(items, items[-1]["id"] if len(rows) > limit else None)

    def list_claim_rows(
        self,
        *,
        tiers: Sequence[str] | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        campaign_id: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[ClaimListing]:
        """Same order and cursor as `Store.list_claims` (by id)."""
        sql, params = f"SELECT {_CLAIM_COLS} FROM web_claim_list WHERE 1=1", list[Any]()
        if tiers:
            sql += f" AND tier IN ({','.join('?' * len(tiers))})"
            params += list(tiers)
        for column, value in (("dataset", dataset), ("outcome", outcome), ("campaign_id", campaign_id)):
            if value is not None:
                sql, params = sql + f" AND {column} = ?", [*params, value]
        if after:
            sql, params = sql + " AND claim_id > ?", [*params, after]
        sql += " ORDER BY claim_id LIMIT ?"
        rows = self._conn_rows(sql, (*params, limit + 1))
        items = [_claim_listing(r) for r in rows[:limit]]
        return Page(items, items[-1]["id"] if len(rows) > limit else None)

    def trial_counts(self, campaign_id: str) -> dict[str, int]:
        """status -> number of trials of a campaign."""
        rows = self._q(
            "SELECT status, COUNT(*) AS n FROM trials WHERE campaign_id = ? GROUP BY status", (campaign_id,)
        )
        return {r["status"]: int(r["n"]) for r in rows}

    def trial_curve(self, campaign_id: str) -> list[tuple[str, str, str, float | None]]:
        """(id, arm, status, objective) of finished trials in the order results arrived.
        Plain tuples: a campaign page may plot 10k of them."""
        rows = self._conn_rows(
            "SELECT id, arm, status, objective FROM trials WHERE campaign_id = ? "
            "AND status NOT IN ('pending', 'running') ORDER BY updated_at, id",
            (campaign_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def recent_trials(self, campaign_id: str, limit: int = 30) -> list[TrialListing]:
        rows = self._conn_rows(
            f"SELECT {_TRIAL_COLS} FROM trials WHERE campaign_id = ? ORDER BY updated_at DESC, id LIMIT ?",
            (campaign_id, limit),
        )
        return [_trial_listing(r) for r in rows]

    def _conn_rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows as tuples (no sqlite3.Row objects) for large reads."""
        with self._lock:
            cur = self._conn.cursor()
            cur.row_factory = None
            return cur.execute(sql, params).fetchall()

    def campaign_progress(self, campaign_id: str) -> dict[str, Any]:
        """A cheap fingerprint of a campaign's state: changes whenever anything visible does."""
        rows = self._q(
            "SELECT c.status, c.updated_at, "
            "(SELECT COUNT(*) FROM trials t WHERE t.campaign_id = c.id) AS trials, "
            "(SELECT MAX(updated_at) FROM trials t WHERE t.campaign_id = c.id) AS trial_at, "
            "(SELECT COUNT(*) FROM hypotheses h WHERE h.campaign_id = c.id) AS hypotheses, "
            "(SELECT COUNT(*) FROM cycles y WHERE y.campaign_id = c.id) AS cycles, "
            "(SELECT MAX(updated_at) FROM claims k WHERE k.campaign_id = c.id) AS claim_at "
            "FROM campaigns c WHERE c.id = ?",
            (campaign_id,),
        )
        if not rows:
            raise NotFoundError(f"campaign {campaign_id} not found")
        return dict(rows[0])
