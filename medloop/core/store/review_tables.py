"""Reproduction requests (table from migration 0300): a reviewer asks, through the web API
or the dashboard, for a claim to be re-run on fresh seeds; `medloop claims reproduce`
runs the open ones and closes them.

    open -> done       the reproduction ran; its outcome is evidence on the claim
    open -> withdrawn  (kept for reviewers who change their mind; no command sets it yet)
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal, Protocol

from pydantic import Field

from medloop.core.errors import ConflictError, NotFoundError
from medloop.core.records import Record, utcnow
from medloop.core.store.sqlite_base import SQLiteBase

RequestStatus = Literal["open", "done", "withdrawn"]


class ReproductionRequest(Record):
    id: str
    claim_id: str
    actor: str
    rationale: str
    status: RequestStatus = "open"
    created_at: str = Field(default_factory=utcnow)


class ReviewStore(Protocol):
    def add_reproduction_request(self, request: ReproductionRequest) -> None: ...
    def get_reproduction_request(self, request_id: str) -> ReproductionRequest: ...
    def list_reproduction_requests(
        self, *, claim_id: str | None = None, status: str | None = None
    ) -> list[ReproductionRequest]: ...
    def close_reproduction_request(self, request_id: str, status: RequestStatus = "done") -> None: ...


def _request(r: sqlite3.Row) -> ReproductionRequest:
    return ReproductionRequest(
        id=r["id"],
        claim_id=r["claim_id"],
        actor=r["actor"],
        rationale=r["rationale"],
        status=r["status"],
        created_at=r["created_at"],
    )


class ReviewTablesMixin(SQLiteBase):
    """Mixed into `SQLiteStore`; relies on its connection, lock and query helpers."""

    def add_reproduction_request(self, request: ReproductionRequest) -> None:
        self._x(
            "INSERT INTO web_reproduction_requests VALUES (?,?,?,?,?,?)",
            (
                request.id,
                request.claim_id,
                request.actor,
                request.rationale,
                request.status,
                request.created_at,
            ),
        )

    def get_reproduction_request(self, request_id: str) -> ReproductionRequest:
        rows = self._q("SELECT * FROM web_reproduction_requests WHERE id = ?", (request_id,))
        if not rows:
            raise NotFoundError(
                f"no reproduction request {request_id}", hint="`medloop claims requests` lists them"
            )
        return _request(rows[0])

    def list_reproduction_requests(
        self, *, claim_id: str | None = None, status: str | None = None
    ) -> list[ReproductionRequest]:
        sql, params = "SELECT * FROM web_reproduction_requests WHERE 1=1", list[Any]()
        if claim_id is not None:
            sql, params = sql + " AND claim_id = ?", [*params, claim_id]
        if status is not None:
            sql, params = sql + " AND status = ?", [*params, status]
        rows = self._q(sql + " ORDER BY created_at, id", tuple(params))
        return [_request(r) for r in rows]

    def close_reproduction_request(self, request_id: str, status: RequestStatus = "done") -> None:
        """open -> done | withdrawn. Closing a closed request again with the same status is
        a no-op (a re-run after a crash); with another status it is a conflict."""
        current = self.get_reproduction_request(request_id)
        if current.status == status:
            return
        if current.status != "open":
            raise ConflictError(f"reproduction request {request_id} is already {current.status}")
        self._x(
            "UPDATE web_reproduction_requests SET status = ? WHERE id = ? AND status = 'open'",
            (status, request_id),
        )
