"""Code modules of code hypotheses: the checked source and its record, content-addressed
by sha256 (a put of the same source is a no-op), and the outcome of its smoke trial."""

from __future__ import annotations

import builtins

import sqlalchemy as sa

from medloop.core.code import CodeModule, CodeState, SmokeStatus, source_sha256
from medloop.core.errors import NotFoundError, StoreError
from medloop.core.records import utcnow
from medloop.core.store import schema as s
from medloop.core.store.base import Filter
from medloop.core.store.db import Database, select, update
from medloop.core.store.mapper import Mapper

MODULE = Mapper(CodeModule, s.code_modules, json={"json": "*"})
_HINT = "see `medloop hypotheses code --json`"


class SqlCodeModules:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, module: CodeModule, source: str) -> bool:
        if source_sha256(source) != module.sha256:
            raise StoreError(f"code module {module.sha256[:12]}: the source does not hash to its name")
        now = utcnow()
        extra = {
            "source": source,
            "smoke": "pending",
            "smoke_reason": "",
            "created_at": now,
            "updated_at": now,
        }
        return bool(self.db.put(s.code_modules, [MODULE.row(module, **extra)]))

    def get(self, sha256: str) -> tuple[CodeModule, str]:
        rows = self.db.all(select(s.code_modules, ("sha256",)), {"sha256": sha256})
        if not rows:
            raise NotFoundError(f"code module {sha256[:12]} is not in the knowledge base", hint=_HINT)
        return MODULE.record(rows[0]), rows[0].source

    def list(self, *, point: Filter = None, campaign_id: Filter = None) -> builtins.list[CodeModule]:
        c = s.code_modules.c
        stmt = sa.select(s.code_modules).order_by(c.point, c.name, c.sha256)
        if point is not None:
            stmt = stmt.where(c.point == point)
        if campaign_id is not None:  # the campaign's own modules and those for any campaign
            stmt = stmt.where(sa.or_(c.campaign_id == campaign_id, c.campaign_id.is_(None)))
        return [MODULE.record(r) for r in self.db.all(stmt)]

    def state(self, sha256: str) -> CodeState:
        cols = ("smoke", "smoke_reason", "created_at")
        rows = self.db.all(select(s.code_modules, ("sha256",), cols=cols), {"sha256": sha256})
        if not rows:
            raise NotFoundError(f"code module {sha256[:12]} is not in the knowledge base", hint=_HINT)
        return CodeState(
            smoke=rows[0].smoke, smoke_reason=rows[0].smoke_reason, created_at=rows[0].created_at
        )

    def set_smoke(self, sha256: str, status: SmokeStatus, reason: str = "") -> None:
        n = self.db.write(
            update(s.code_modules, ("sha256",)),
            {"smoke": status, "smoke_reason": reason, "updated_at": utcnow(), "_sha256": sha256},
        )
        if not n:
            raise NotFoundError(f"code module {sha256[:12]} is not in the knowledge base", hint=_HINT)
