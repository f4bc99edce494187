"""The tables, as SQLAlchemy Core metadata: what a new database is created from, and what
Alembic compares an upgraded one with. Names and columns are those of medloop 0.1.0's
SQLite workspaces, so an old workspace upgrades in place (see `migrate.py`).

Text is compared byte-wise on both backends (Postgres columns use the "C" collation), so
cursor pages and sort orders do not depend on a server's locale. JSON is kept as text,
never JSONB, so it reads back exactly as written (the audit chain hashes it).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
metadata = sa.MetaData()


def _c(name: str, type_: Any = TEXT, *args: Any, null: bool = False, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, type_, *args, nullable=null, **kw)


def _opt(name: str, type_: Any = TEXT) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=True)


def _fk(column: str, *, delete: str | None = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey(column, ondelete=delete)


def _table(name: str, *columns: Any, indexes: dict[str, tuple[str, ...]] = {}, **kw: Any) -> sa.Table:  # noqa: B006
    table = sa.Table(name, metadata, *columns, **kw)
    for index, cols in indexes.items():
        sa.Index(index, *(table.c[c] for c in cols))
    return table


_TRIAL_LISTING = (
    "campaign_id",
    "hypothesis_id",
    "arm",
    "seed",
    "status",
    "objective",
    "created_at",
    "updated_at",
)

campaigns = _table(
    "campaigns",
    _c("id", primary_key=True),
    *(_c(n) for n in ("name", "status", "owner", "spec_json", "state_json", "created_at", "updated_at")),
    indexes={"campaigns_status": ("status",)},
)
cycles = _table(
    "cycles",
    _c("campaign_id", TEXT, _fk("campaigns.id"), primary_key=True),
    _c("idx", sa.Integer, primary_key=True, autoincrement=False),
    _c("summary_json"),
    _c("created_at"),
)
hypotheses = _table(
    "hypotheses",
    _c("id", primary_key=True),
    _c("campaign_id", TEXT, _fk("campaigns.id")),
    _c("cycle", sa.Integer),
    _c("verdict"),
    _c("json"),
    _c("created_at"),
    _opt("seq", sa.Integer),  # insertion order (0.1.0 used SQLite's rowid)
    indexes={"hypotheses_campaign": ("campaign_id", "cycle")},
)
trials = _table(
    "trials",
    _c("id", primary_key=True),
    _c("campaign_id", TEXT, _fk("campaigns.id")),
    _c("hypothesis_id", TEXT, _fk("hypotheses.id", delete=None), null=True),
    _c("arm"),
    _c("spec_hash"),
    _c("seed", sa.BigInteger),
    _c("status"),
    _opt("objective", sa.Double),
    _c("spec_json"),
    _opt("result_json"),
    _c("created_at"),
    _c("updated_at"),
    # The listing indexes cover the listing columns: a page reads no JSON.
    indexes={
        "trials_campaign": ("campaign_id", "created_at"),
        "trials_spec_hash": ("spec_hash", "status"),
        "trials_list": ("id", *_TRIAL_LISTING),
        "trials_campaign_id": ("campaign_id", "id", *_TRIAL_LISTING[1:]),
        "trials_status_id": ("status", "id", *(c for c in _TRIAL_LISTING if c != "status")),
    },
)
claims = _table(
    "claims",
    _c("id", primary_key=True),
    _c("campaign_id", TEXT, _fk("campaigns.id", delete="SET NULL"), null=True),
    _opt("hypothesis_id"),
    *(_c(n) for n in ("tier", "outcome", "dataset", "statement", "json", "created_at", "updated_at")),
    indexes={"claims_tier": ("tier",), "claims_dataset": ("dataset", "outcome")},
)
evidence = _table(
    "evidence",
    _c("claim_id", TEXT, _fk("claims.id"), primary_key=True),
    *(_c(n, primary_key=True) for n in ("kind", "ref_id", "role")),
    _c("json"),
    indexes={"evidence_ref": ("ref_id",)},
)
# Append-only and hash-chained: hash = sha256(prev_hash + canonical entry); triggers below.
audit = _table(
    "audit",
    _c("seq", sa.Integer, primary_key=True, autoincrement=False),
    *(
        _c(n)
        for n in ("ts", "actor", "action", "object_type", "object_id", "detail_json", "prev_hash", "hash")
    ),
    indexes={"audit_object": ("object_type", "object_id")},
)
# Claim listings read this copy of each claim's listing columns (no JSON parsed per row).
claim_list = _table(
    "web_claim_list",
    _c("claim_id", TEXT, _fk("claims.id"), primary_key=True),
    _opt("campaign_id"),
    _opt("hypothesis_id"),
    *(_c(n) for n in ("tier", "outcome", "dataset", "statement", "created_at", "updated_at")),
    *(_opt(n, sa.Double) for n in ("estimate", "ci_low", "ci_high", "p_adjusted")),
    _opt("author"),
    indexes={
        "web_claim_list_tier": ("tier", "claim_id"),
        "web_claim_list_campaign": ("campaign_id", "claim_id"),
        "web_claim_list_dataset": ("dataset", "outcome", "claim_id"),
        "web_claim_list_outcome": ("outcome", "claim_id"),
    },
)

# ---------------------------------------------------------------- knowledge model
entities = _table(
    "kb_entities",
    _c("id", primary_key=True),
    *(_c(n) for n in ("kind", "name", "json", "created_at")),
    indexes={"kb_entities_kind": ("kind", "name")},
)
edges = _table(
    "kb_edges",
    _c("seq", sa.Integer, primary_key=True),  # the order graph indexes follow
    *(_c(n) for n in ("src", "dst", "kind", "src_kind", "dst_kind", "json", "created_at")),
    sa.UniqueConstraint("src", "dst", "kind"),
    indexes={"kb_edges_dst": ("dst", "kind")},
    sqlite_autoincrement=True,
)
facts = _table(
    "kb_claim_facts",
    _c("seq", sa.Integer, primary_key=True),  # ingest order, what vector indexes follow
    _c("claim_id", TEXT, _fk("claims.id"), unique=True),
    *(_c(n) for n in ("task", "outcome", "dataset", "dataset_checksum", "intervention")),
    _c("orientation", sa.Integer),
    _c("sign", sa.Integer),  # canonical direction of a significant effect, 0 if none
    _c("factors_json"),
    _c("fingerprint_json", server_default="{}"),
    indexes={
        "kb_claim_facts_group": ("intervention", "outcome", "sign", "seq"),
        "kb_claim_facts_group_dataset": ("intervention", "outcome", "sign", "dataset_checksum", "seq"),
    },
    sqlite_autoincrement=True,
)
factors = _table(
    "kb_claim_factors",
    _c("claim_id", TEXT, _fk("claims.id"), primary_key=True),
    _c("factor", primary_key=True),
)
# One row per (claim, factor) plus a '*' row per claim, with the claim's current tier: the
# structured filter of planning retrieval reads one index.
claim_filter = _table(
    "kb_claim_filter",
    _c("claim_id", TEXT, _fk("claims.id"), primary_key=True),
    _c("factor", primary_key=True),
    *(_c(n) for n in ("task", "outcome", "tier")),
    _c("seq", sa.Integer),
    indexes={"kb_claim_filter_lookup": ("factor", "tier", "outcome", "seq")},
)
vectors = _table(
    "kb_vectors",
    _c("claim_id", TEXT, _fk("claims.id"), primary_key=True),
    _c("embedder"),
    _c("dim", sa.Integer),
    _c("text_hash"),
    _c("vector", sa.LargeBinary),
)
meta = _table("kb_meta", _c("key", primary_key=True), _c("value"))
quarantines = _table(
    "kb_quarantines",
    _c("id", primary_key=True),
    *(_c(n) for n in ("target_type", "target_id", "why", "actor", "created_at")),
    *(_opt(n) for n in ("lifted_at", "lifted_by", "lift_reason")),
    indexes={"kb_quarantines_target": ("target_id", "lifted_at")},
)
quarantine_members = _table(
    "kb_quarantine_members",
    _c("quarantine_id", TEXT, _fk("kb_quarantines.id", delete=None), primary_key=True),
    _c("claim_id", TEXT, _fk("claims.id"), primary_key=True),
    _c("prev_tier"),
    indexes={"kb_quarantine_members_claim": ("claim_id",)},
)

# ---------------------------------------------------------------- web and tools
users = _table("web_users", _c("name", primary_key=True), _c("role"), _c("created_at"), _opt("disabled_at"))
tokens = _table(
    "web_tokens",
    _c("id", primary_key=True),
    _c("user_name", TEXT, _fk("web_users.name", delete=None)),
    _c("hash"),  # sha256 of the secret; the secret is shown once
    _c("label"),
    _c("created_at"),
    _opt("expires_at"),
    _opt("revoked_at"),
    indexes={"web_tokens_user": ("user_name",)},
)
sessions = _table(
    "web_sessions",
    _c("id_hash", primary_key=True),  # sha256 of the cookie value
    _c("user_name", TEXT, _fk("web_users.name", delete=None)),
    _c("csrf"),
    _c("created_at"),
    _c("expires_at"),
    _opt("revoked_at"),
)
rate_events = _table(
    "web_rate_events",
    _c("user_name"),
    _c("action"),
    _c("at", sa.Double),  # unix seconds
    indexes={"web_rate_events_key": ("user_name", "action", "at"), "web_rate_events_at": ("at",)},
)
requests = _table(
    "web_reproduction_requests",
    _c("id", primary_key=True),
    _c("claim_id", TEXT, _fk("claims.id")),
    *(_c(n) for n in ("actor", "rationale", "status", "created_at")),
    indexes={"web_reproduction_requests_claim": ("claim_id",)},
)
# One row per (caller, resource, ref_id): charging is idempotent.
charges = _table(
    "tool_charges",
    *(_c(n, primary_key=True) for n in ("caller", "resource", "ref_id")),
    _c("amount", sa.Double),
    _c("created_at"),
    _c("updated_at"),
    indexes={"tool_charges_window": ("caller", "resource", "created_at")},
)
tool_jobs = _table(
    "tool_jobs",
    _c("handle", primary_key=True),
    *(_c(n) for n in ("kind", "caller", "ref_id", "json", "created_at", "updated_at")),
    indexes={"tool_jobs_caller": ("caller", "kind", "created_at")},
)

# The audit log refuses updates and deletes in the database itself, on both backends.
_APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER audit_no_{op.lower()} BEFORE {op} ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
        for op in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit is append-only'; END $$",
        "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
    ],
}
for _dialect, _statements in _APPEND_ONLY.items():
    for _sql in _statements:
        sa.event.listen(audit, "after_create", sa.DDL(_sql).execute_if(dialect=_dialect))  # type: ignore[no-untyped-call]
