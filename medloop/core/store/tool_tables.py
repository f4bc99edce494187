"""SQLite tables of the tool library (migration 0400): per-caller charges for budgets and
the handles long-running tools return. The tools package owns their meaning; rows are
plain dicts here so core needs no tool records.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from medloop.core.errors import NotFoundError
from medloop.core.ids import canonical_json
from medloop.core.records import utcnow
from medloop.core.store.sqlite_base import SQLiteBase


class ToolTablesMixin(SQLiteBase):
    """Mixed into `SQLiteStore`; relies on its connection, lock and query helpers."""

    # ------------------------------------------------------------ charges

    def charge_tool(
        self, caller: str, resource: str, ref_id: str, amount: float, *, settle: bool = False
    ) -> bool:
        """Record that `caller` used `amount` of `resource` for `ref_id`. Idempotent: a
        second charge for the same ref is ignored (False), unless `settle`, which replaces
        the amount (a reservation becoming the measured value). True if a row was written."""
        now = utcnow()
        if settle:
            changed = self._x(
                "UPDATE tool_charges SET amount = ?, updated_at = ? WHERE caller = ? AND resource = ? AND ref_id = ?",
                (float(amount), now, caller, resource, ref_id),
            )
            if changed:
                return True
        return (
            self._x(
                "INSERT OR IGNORE INTO tool_charges VALUES (?,?,?,?,?,?)",
                (caller, resource, ref_id, float(amount), now, now),
            )
            > 0
        )

    def tool_usage(self, caller: str, *, since: str = "") -> dict[str, float]:
        """resource -> total charged to `caller` since the ISO time `since` ('' = ever)."""
        rows = self._q(
            "SELECT resource, SUM(amount) AS total FROM tool_charges "
            "WHERE caller = ? AND created_at >= ? GROUP BY resource",
            (caller, since),
        )
        return {r["resource"]: float(r["total"] or 0.0) for r in rows}

    def tool_charges(self, caller: str, resource: str) -> dict[str, float]:
        """ref_id -> amount of one caller's charges of one resource."""
        rows = self._q(
            "SELECT ref_id, amount FROM tool_charges WHERE caller = ? AND resource = ?", (caller, resource)
        )
        return {r["ref_id"]: float(r["amount"]) for r in rows}

    # ------------------------------------------------------------ job handles

    def put_tool_job(self, handle: str, kind: str, caller: str, ref_id: str, detail: dict[str, Any]) -> bool:
        """Insert a handle (False if it exists; use `update_tool_job` to change it)."""
        now = utcnow()
        return (
            self._x(
                "INSERT OR IGNORE INTO tool_jobs VALUES (?,?,?,?,?,?,?)",
                (handle, kind, caller, ref_id, canonical_json(detail), now, now),
            )
            > 0
        )

    def update_tool_job(self, handle: str, detail: dict[str, Any]) -> None:
        if not self._x(
            "UPDATE tool_jobs SET json = ?, updated_at = ? WHERE handle = ?",
            (canonical_json(detail), utcnow(), handle),
        ):
            raise NotFoundError(f"no tool job {handle}")

    def get_tool_job(self, handle: str) -> dict[str, Any]:
        rows = self._q("SELECT * FROM tool_jobs WHERE handle = ?", (handle,))
        if not rows:
            raise NotFoundError(f"no tool job {handle}")
        return self._job(rows[0])

    def list_tool_jobs(
        self, *, caller: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM tool_jobs WHERE 1=1", list[Any]()
        if caller is not None:
            sql, params = sql + " AND caller = ?", [*params, caller]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        rows = self._q(sql + " ORDER BY created_at DESC, handle LIMIT ?", (*params, limit))
        return [self._job(r) for r in rows]

    @staticmethod
    def _job(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "handle": row["handle"],
            "kind": row["kind"],
            "caller": row["caller"],
            "ref_id": row["ref_id"],
            "detail": json.loads(row["json"]),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
