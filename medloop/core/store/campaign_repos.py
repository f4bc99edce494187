"""Campaigns, cycles and hypotheses, trials, their column-only listings, and the audit log."""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa

from medloop.core.errors import NotFoundError
from medloop.core.records import AUDIT_GENESIS, AuditEntry, Campaign, Hypothesis, Trial, TrialResult, utcnow
from medloop.core.store import schema as s
from medloop.core.store.base import AuditItem, ClaimListing, Filter, Page, TrialListing
from medloop.core.store.db import Database, Repo, Row, given, one, select, update, upsert
from medloop.core.store.mapper import Mapper

GENESIS_HASH = AUDIT_GENESIS
_STATE = ("baseline", "incumbent", "incumbent_objective", "baseline_objective", "summary", "started_by")
CAMPAIGN = Mapper(Campaign, s.campaigns, json={"spec_json": "spec", "state_json": _STATE})
HYPOTHESIS = Mapper(Hypothesis, s.hypotheses, json={"json": "*"})
TRIAL = Mapper(
    Trial,
    s.trials,
    json={"spec_json": "spec", "result_json": "result"},
    columns={"seed": "spec.seed", "objective": "result.objective"},
)
AUDIT = Mapper(AuditEntry, s.audit, json={"detail_json": "detail"})


class SqlCampaigns(Repo[Campaign]):
    mapper, missing, hint = CAMPAIGN, "campaign {key} not found", "see `medloop campaign list`"

    def list(self, *, status: Filter = None, after: str | None = None, limit: int = 100) -> Page[Campaign]:
        return self.db.page(
            s.campaigns, CAMPAIGN.record, after=after, limit=limit, desc=True, where={"status": status}
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
        rows = self.db.all(stmt, {"campaign_id": campaign_id})
        return [{"idx": r.idx, **json.loads(r.summary_json)} for r in rows]

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
    seq = sa.select(sa.func.coalesce(sa.func.max(s.hypotheses.c.seq), 0) + 1).scalar_subquery()
    return upsert(dialect, s.hypotheses, ("verdict", "json"), ()).values(seq=seq)


class SqlTrials(Repo[Trial]):
    mapper, missing = TRIAL, "trial {key} not found"

    def put(self, trial: Trial) -> bool:
        return bool(self.db.put(s.trials, [TRIAL.row(trial, updated_at=utcnow())]))

    def list(self, *, after: str | None = None, limit: int = 1000, **where: Filter) -> Page[Trial]:
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
def _set_result() -> sa.Update:  # the updated row back, without the result JSON just written
    return update(s.trials, ("id",)).returning(*(c for c in s.trials.c if c.name != "result_json"))


_TRIAL_COLS = tuple(TrialListing.__annotations__)
_CLAIM_KEYS = tuple(ClaimListing.__annotations__)
_CLAIM_COLS = ("claim_id", *_CLAIM_KEYS[1:])


class SqlListings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def trials(self, *, after: str | None = None, limit: int = 50, **where: Filter) -> Page[TrialListing]:
        return self.db.page(s.trials, _trial_listing, after=after, limit=limit, cols=_TRIAL_COLS, where=where)

    def claims(
        self, *, tiers: Sequence[str] | None = None, after: str | None = None, limit: int = 50, **where: Filter
    ) -> Page[ClaimListing]:  # fmt: skip
        return self.db.page(
            s.claim_list, _claim_listing, after=after, limit=limit, key="claim_id", cols=_CLAIM_COLS,
            within={"tier": tiers}, where=where,
        )  # fmt: skip

    def trial_counts(self, campaign_id: str) -> dict[str, int]:
        t = s.trials
        stmt = (
            sa.select(t.c.status, sa.func.count()).where(t.c.campaign_id == campaign_id).group_by(t.c.status)
        )
        return {r[0]: int(r[1]) for r in self.db.all(stmt)}

    def trial_curve(self, campaign_id: str) -> list[tuple[str, str, str, float | None]]:
        t = s.trials
        stmt = sa.select(t.c.id, t.c.arm, t.c.status, t.c.objective).where(
            t.c.campaign_id == campaign_id, t.c.status.not_in(["pending", "running"])
        )
        return [(r[0], r[1], r[2], r[3]) for r in self.db.all(stmt.order_by(t.c.updated_at, t.c.id))]

    def recent_trials(self, campaign_id: str, limit: int = 30) -> list[TrialListing]:
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

    def of(table: sa.Table, value: Any, label: str) -> Any:
        return sa.select(value).where(table.c.campaign_id == c.c.id).scalar_subquery().label(label)

    return sa.select(
        c.c.status,
        c.c.updated_at,
        of(s.trials, sa.func.count(), "trials"),
        of(s.trials, sa.func.max(s.trials.c.updated_at), "trial_at"),
        of(s.hypotheses, sa.func.count(), "hypotheses"),
        of(s.cycles, sa.func.count(), "cycles"),
        of(s.claims, sa.func.max(s.claims.c.updated_at), "claim_at"),
    ).where(c.c.id == sa.bindparam("id"))


# Plain str keys (orjson refuses SQLAlchemy's quoted_name keys); the claim_id column is "id".
def _trial_listing(row: Row) -> TrialListing:
    return cast(TrialListing, dict(zip(_TRIAL_COLS, row, strict=True)))


def _claim_listing(row: Row) -> ClaimListing:
    return cast(ClaimListing, dict(zip(_CLAIM_KEYS, row, strict=True)))


class SqlAudit:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(
        self, actor: str, action: str, object_type: str, object_id: str, detail: dict[str, Any]
    ) -> AuditEntry:
        return self.append_many([(actor, action, object_type, object_id, detail)])[0]

    def append_many(self, entries: Sequence[AuditItem]) -> builtins.list[AuditEntry]:
        """Entries in order, chained, in one transaction and one INSERT batch."""
        out: builtins.list[AuditEntry] = []
        with self.db.transaction():
            seq, prev_hash = self.head()
            for actor, action, object_type, object_id, detail in entries:
                seq += 1
                body = {"seq": seq, "ts": utcnow(), "actor": actor, "action": action,
                        "object_type": object_type, "object_id": object_id, "detail": detail}  # fmt: skip
                digest = AuditEntry.digest(prev_hash, body)
                out.append(AuditEntry(prev_hash=prev_hash, hash=digest, **body))
                prev_hash = digest
            self.db.write(sa.insert(s.audit), [AUDIT.row(e) for e in out])
        return out

    def list(
        self, *, object_id: Filter = None, after: int = 0, limit: int = 1000
    ) -> builtins.list[AuditEntry]:
        where = given(object_id=object_id)
        stmt = select(s.audit, tuple(where), order=("seq",), after="seq", limit=True)
        return [AUDIT.record(r) for r in self.db.all(stmt, where | {"after": after, "limit": limit})]

    def verify(self) -> tuple[bool, int | None]:
        """Recompute the chain: entries numbered 1..n without a gap, each linked to the one
        before. An entry removed from the middle shows as a gap even when the hashes after
        it were recomputed; edits with recomputed hashes and removed last entries need an
        anchor kept outside the database (`head`, web/anchors.py)."""
        prev, seq = GENESIS_HASH, 0
        while batch := self.list(after=seq, limit=5000):
            for e in batch:
                if not e.follows(seq, prev):
                    return False, e.seq
                prev, seq = e.hash, e.seq
        return True, None

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, the genesis hash) when empty."""
        stmt = select(s.audit, cols=("seq", "hash"), order=("seq",), desc=True, limit=True)
        last = self.db.all(stmt, {"limit": 1})
        return (int(last[0].seq), str(last[0].hash)) if last else (0, GENESIS_HASH)
