"""Campaigns, cycles and hypotheses, trials, their column-only listings, and the audit log."""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa

from medloop.core.errors import NotFoundError
from medloop.core.ids import canonical_json, sha256_hex
from medloop.core.records import AuditEntry, Campaign, Hypothesis, Trial, TrialResult, utcnow
from medloop.core.store import schema as s
from medloop.core.store.base import AuditItem
from medloop.core.store.db import Database, Row, given, select, update, upsert
from medloop.core.store.mapper import Mapper, R
from medloop.core.store.rows import ClaimListing, Page, TrialListing

GENESIS_HASH = "0" * 64
CAMPAIGN = Mapper(
    Campaign,
    s.campaigns,
    json={
        "spec_json": "spec",
        "state_json": ("baseline", "incumbent", "incumbent_objective", "baseline_objective", "summary"),
    },
)
HYPOTHESIS = Mapper(Hypothesis, s.hypotheses, json={"json": "*"})
TRIAL = Mapper(
    Trial,
    s.trials,
    json={"spec_json": "spec", "result_json": "result"},
    columns={"seed": "spec.seed", "objective": "result.objective"},
)
AUDIT = Mapper(AuditEntry, s.audit, json={"detail_json": "detail"})


def one(db: Database, mapper: Mapper[R], key: str, missing: str, hint: str | None = None) -> R:
    """The record whose primary key is `key`, or NotFoundError(missing)."""
    name = mapper.table.primary_key.columns[0].name
    rows = db.all(select(mapper.table, (name,)), {name: key})
    if not rows:
        raise NotFoundError(missing, hint=hint)
    return mapper.record(rows[0])


class SqlCampaigns:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, campaign: Campaign) -> None:
        self.db.write(sa.insert(s.campaigns), CAMPAIGN.row(campaign))

    def get(self, campaign_id: str) -> Campaign:
        return one(
            self.db, CAMPAIGN, campaign_id, f"campaign {campaign_id} not found", "see `medloop campaign list`"
        )

    def list(
        self, *, status: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[Campaign]:
        return self.db.page(
            s.campaigns, CAMPAIGN.record, after=after, limit=limit, where=given(status=status), desc=True
        )

    def update(self, campaign_id: str, **changes: Any) -> Campaign:
        with self.db.transaction():
            updated = self.get(campaign_id).model_copy(update={**changes, "updated_at": utcnow()})
            Campaign.model_validate(updated.model_dump())  # type-check the changes
            self.db.write(update(s.campaigns, ("id",)), CAMPAIGN.row(updated) | {"_id": campaign_id})
        return updated


class SqlCycles:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, campaign_id: str, idx: int, summary: dict[str, Any]) -> None:
        row = {"campaign_id": campaign_id, "idx": idx, "summary_json": json.dumps(summary, default=str)}
        self.db.put(s.cycles, [row | {"created_at": utcnow()}], set_=["summary_json"])

    def list(self, campaign_id: str) -> builtins.list[dict[str, Any]]:
        stmt = select(s.cycles, ("campaign_id",), cols=("idx", "summary_json"), order=("idx",))
        return [
            {"idx": r.idx, **json.loads(r.summary_json)}
            for r in self.db.all(stmt, {"campaign_id": campaign_id})
        ]

    def put_hypothesis(self, hypothesis: Hypothesis) -> None:
        with self.db.transaction():  # the write lock makes MAX(seq) + 1 unique
            self.db.all(_put_hypothesis(self.db.dialect), HYPOTHESIS.row(hypothesis, created_at=utcnow()))

    def get_hypothesis(self, hypothesis_id: str) -> Hypothesis:
        return one(self.db, HYPOTHESIS, hypothesis_id, f"hypothesis {hypothesis_id} not found")

    def hypotheses(self, campaign_id: str, cycle: int | None = None) -> builtins.list[Hypothesis]:
        where = given(campaign_id=campaign_id, cycle=cycle)
        stmt = select(s.hypotheses, tuple(where), cols=("json",), order=("cycle", "seq"))
        return [HYPOTHESIS.record(r) for r in self.db.all(stmt, where)]


@functools.cache
def _put_hypothesis(dialect: str) -> Any:
    h = s.hypotheses
    stmt = upsert(dialect, h, ("verdict", "json"), ())
    return stmt.values(seq=sa.select(sa.func.coalesce(sa.func.max(h.c.seq), 0) + 1).scalar_subquery())


class SqlTrials:
    _RESULT = ("status", "objective", "result_json", "updated_at")

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, trial: Trial) -> bool:
        return bool(self.db.put(s.trials, [TRIAL.row(trial, updated_at=utcnow())]))

    def get(self, trial_id: str) -> Trial:
        return one(self.db, TRIAL, trial_id, f"trial {trial_id} not found")

    def list(
        self,
        *,
        campaign_id: str | None = None,
        hypothesis_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> Page[Trial]:
        where = given(campaign_id=campaign_id, hypothesis_id=hypothesis_id, status=status)
        return self.db.page(s.trials, TRIAL.record, after=after, limit=limit, where=where)

    def set_result(self, trial_id: str, result: TrialResult) -> Trial:
        values = {
            "status": result.status,
            "objective": result.objective,
            "result_json": result.model_dump_json(),
        }
        rows = self.db.all(_set_result(), values | {"updated_at": utcnow(), "_id": trial_id})
        if not rows:
            raise NotFoundError(f"trial {trial_id} not found")
        return TRIAL.record(rows[0], result=result)

    def set_status(self, trial_id: str, status: str) -> None:
        self.db.write(update(s.trials, ("id",)), {"status": status, "updated_at": utcnow(), "_id": trial_id})

    def find(self, spec_hash: str, *, status: str = "succeeded") -> Trial | None:
        stmt = select(s.trials, ("spec_hash", "status"), order=("created_at",), limit=True)
        rows = self.db.all(stmt, {"spec_hash": spec_hash, "status": status, "limit": 1})
        return TRIAL.record(rows[0]) if rows else None


@functools.cache
def _set_result() -> sa.Update:
    t = s.trials
    return update(t, ("id",)).returning(*(c for c in t.c if c.name != "result_json"))


_TRIAL_COLS = tuple(TrialListing.__annotations__)
_CLAIM_COLS = tuple(k for k in ClaimListing.__annotations__ if k != "id")


class SqlListings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def trials(
        self,
        *,
        campaign_id: str | None = None,
        hypothesis_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[TrialListing]:
        where = given(campaign_id=campaign_id, hypothesis_id=hypothesis_id, status=status)
        return self.db.page(s.trials, _trial_listing, after=after, limit=limit, where=where, cols=_TRIAL_COLS)

    def claims(
        self,
        *,
        tiers: Sequence[str] | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        campaign_id: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[ClaimListing]:
        where = given(dataset=dataset, outcome=outcome, campaign_id=campaign_id)
        cols = ("claim_id", *_CLAIM_COLS)
        return self.db.page(
            s.claim_list,
            _claim_listing,
            key="claim_id",
            after=after,
            limit=limit,
            where=where,
            within={"tier": tiers or []},
            cols=cols,
        )

    def trial_counts(self, campaign_id: str) -> dict[str, int]:
        t = s.trials
        stmt = (
            sa.select(t.c.status, sa.func.count()).where(t.c.campaign_id == campaign_id).group_by(t.c.status)
        )
        return {r[0]: int(r[1]) for r in self.db.all(stmt)}

    def trial_curve(self, campaign_id: str) -> builtins.list[tuple[str, str, str, float | None]]:
        t = s.trials
        stmt = (
            sa.select(t.c.id, t.c.arm, t.c.status, t.c.objective)
            .where(t.c.campaign_id == campaign_id, t.c.status.not_in(["pending", "running"]))
            .order_by(t.c.updated_at, t.c.id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in self.db.all(stmt)]

    def recent_trials(self, campaign_id: str, limit: int = 30) -> builtins.list[TrialListing]:
        t = s.trials
        stmt = sa.select(*(t.c[k] for k in _TRIAL_COLS)).where(t.c.campaign_id == campaign_id)
        return [
            _trial_listing(r) for r in self.db.all(stmt.order_by(t.c.updated_at.desc(), t.c.id).limit(limit))
        ]

    def campaign_progress(self, campaign_id: str) -> dict[str, Any]:
        rows = self.db.all(_progress(), {"id": campaign_id})
        if not rows:
            raise NotFoundError(f"campaign {campaign_id} not found")
        return {str(k): v for k, v in rows[0]._mapping.items()}


@functools.cache
def _progress() -> sa.Select[Any]:
    c = s.campaigns

    def of(table: sa.Table, value: Any) -> Any:
        return sa.select(value).where(table.c.campaign_id == c.c.id).scalar_subquery()

    return sa.select(
        c.c.status,
        c.c.updated_at,
        of(s.trials, sa.func.count()).label("trials"),
        of(s.trials, sa.func.max(s.trials.c.updated_at)).label("trial_at"),
        of(s.hypotheses, sa.func.count()).label("hypotheses"),
        of(s.cycles, sa.func.count()).label("cycles"),
        of(s.claims, sa.func.max(s.claims.c.updated_at)).label("claim_at"),
    ).where(c.c.id == sa.bindparam("id"))


# Plain str keys (orjson refuses SQLAlchemy's quoted_name keys); the claim_id column is "id".
def _trial_listing(row: Row) -> TrialListing:
    return cast(TrialListing, dict(zip(_TRIAL_COLS, row, strict=True)))


def _claim_listing(row: Row) -> ClaimListing:
    return cast(ClaimListing, dict(zip(("id", *_CLAIM_COLS), row, strict=True)))


class SqlAudit:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(
        self, actor: str, action: str, object_type: str, object_id: str, detail: dict[str, Any]
    ) -> AuditEntry:
        return self.append_many([(actor, action, object_type, object_id, detail)])[0]

    def append_many(self, entries: Sequence[AuditItem]) -> builtins.list[AuditEntry]:
        """Entries in order, chained, in one transaction and one INSERT batch."""
        a, out = s.audit, list[AuditEntry]()
        with self.db.transaction():
            last = self.db.all(
                select(a, cols=("seq", "hash"), order=("seq",), desc=True, limit=True), {"limit": 1}
            )
            seq, prev_hash = (last[0].seq, last[0].hash) if last else (0, GENESIS_HASH)
            for actor, action, object_type, object_id, detail in entries:
                seq += 1
                body = {
                    "seq": seq,
                    "ts": utcnow(),
                    "actor": actor,
                    "action": action,
                    "object_type": object_type,
                    "object_id": object_id,
                    "detail": detail,
                }
                digest = sha256_hex(prev_hash + canonical_json(body))
                out.append(AuditEntry(prev_hash=prev_hash, hash=digest, **body))
                prev_hash = digest
            self.db.write(sa.insert(a), [AUDIT.row(e) for e in out])
        return out

    def list(
        self, *, object_id: str | None = None, after: int = 0, limit: int = 1000
    ) -> builtins.list[AuditEntry]:
        where = given(object_id=object_id)
        stmt = select(s.audit, tuple(where), order=("seq",), after="seq", limit=True)
        return [AUDIT.record(r) for r in self.db.all(stmt, where | {"after": after, "limit": limit})]

    def verify(self) -> tuple[bool, int | None]:
        prev, after = GENESIS_HASH, 0
        while batch := self.list(after=after, limit=5000):
            for e in batch:
                body = e.model_dump(
                    include={"seq", "ts", "actor", "action", "object_type", "object_id", "detail"}
                )
                if e.prev_hash != prev or sha256_hex(prev + canonical_json(body)) != e.hash:
                    return False, e.seq
                prev = e.hash
            after = batch[-1].seq
        return True, None
