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
_TYPES: dict[str, Any] = {
    "": TEXT,
    "int": sa.Integer,
    "big": sa.BigInteger,
    "float": sa.Double,
    "blob": sa.LargeBinary,
}
metadata = sa.MetaData()


def _table(name: str, columns: str, *extra: Any, index: dict[str, str] | None = None, **kw: Any) -> sa.Table:
    """`columns`: `name[:type][mark]`, types int, big, float, blob (default text); marks
    `*` primary key, `+` auto-numbered primary key, `?` nullable. `index`: name -> columns."""
    cols = []
    for word in columns.split():
        mark = word[-1] if word[-1] in "*+?" else ""
        col, _, kind = word.rstrip("*+?").partition(":")
        key = mark in ("*", "+")
        cols.append(
            sa.Column(col, _TYPES[kind], primary_key=key, autoincrement=mark == "+", nullable=mark == "?")
        )
    table = sa.Table(name, metadata, *cols, *extra, **kw)
    for index_name, on in (index or {}).items():
        sa.Index(index_name, *(table.c[c] for c in on.split()))
    return table


def _fk(column: str, target: str, delete: str | None = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target], ondelete=delete)


_LISTED = "campaign_id hypothesis_id arm seed status objective created_at updated_at"  # trial listing columns
campaigns = _table(
    "campaigns",
    "id* name status owner spec_json state_json created_at updated_at",
    index={"campaigns_status": "status"},
)
cycles = _table("cycles", "campaign_id* idx:int* summary_json created_at", _fk("campaign_id", "campaigns.id"))
hypotheses = _table(
    "hypotheses",
    "id* campaign_id cycle:int verdict json created_at seq:int?",  # seq: insertion order (0.1.0: rowid)
    _fk("campaign_id", "campaigns.id"),
    index={"hypotheses_campaign": "campaign_id cycle"},
)
trials = _table(
    "trials",
    "id* campaign_id hypothesis_id? arm spec_hash seed:big status objective:float? spec_json result_json? "
    "created_at updated_at",
    _fk("campaign_id", "campaigns.id"),
    _fk("hypothesis_id", "hypotheses.id", None),
    # The listing indexes cover the listing columns: a page reads no JSON.
    index={
        "trials_campaign": "campaign_id created_at",
        "trials_spec_hash": "spec_hash status",
        "trials_list": f"id {_LISTED}",
        "trials_campaign_id": f"campaign_id id {_LISTED.removeprefix('campaign_id ')}",
        "trials_status_id": f"status id {_LISTED.replace(' status', '')}",
    },
)
claims = _table(
    "claims",
    "id* campaign_id? hypothesis_id? tier outcome dataset statement json created_at updated_at",
    _fk("campaign_id", "campaigns.id", "SET NULL"),
    index={"claims_tier": "tier", "claims_dataset": "dataset outcome"},
)
evidence = _table(
    "evidence",
    "claim_id* kind* ref_id* role* json",
    _fk("claim_id", "claims.id"),
    index={"evidence_ref": "ref_id"},
)
# Append-only and hash-chained: hash = sha256(prev_hash + canonical entry); triggers below.
audit = _table(
    "audit",
    "seq:int* ts actor action object_type object_id detail_json prev_hash hash",
    index={"audit_object": "object_type object_id"},
)
# Claim listings read this copy of each claim's listing columns (no JSON parsed per row).
claim_list = _table(
    "web_claim_list",
    "claim_id* campaign_id? hypothesis_id? tier outcome dataset statement created_at updated_at "
    "estimate:float? ci_low:float? ci_high:float? p_adjusted:float? author?",
    _fk("claim_id", "claims.id"),
    index={
        "web_claim_list_tier": "tier claim_id",
        "web_claim_list_campaign": "campaign_id claim_id",
        "web_claim_list_dataset": "dataset outcome claim_id",
        "web_claim_list_outcome": "outcome claim_id",
    },
)

# ---------------------------------------------------------------- knowledge model
entities = _table("kb_entities", "id* kind name json created_at", index={"kb_entities_kind": "kind name"})
edges = _table(  # seq: the order graph indexes follow
    "kb_edges",
    "seq:int+ src dst kind src_kind dst_kind json created_at",
    sa.UniqueConstraint("src", "dst", "kind"),
    index={"kb_edges_dst": "dst kind"},
    sqlite_autoincrement=True,
)
facts = _table(  # seq: ingest order, what vector indexes follow; sign: of a significant effect, 0 if none
    "kb_claim_facts",
    "seq:int+ claim_id task outcome dataset dataset_checksum intervention orientation:int sign:int factors_json",
    sa.Column("fingerprint_json", TEXT, nullable=False, server_default="{}"),
    _fk("claim_id", "claims.id"),
    sa.UniqueConstraint("claim_id"),
    index={
        "kb_claim_facts_group": "intervention outcome sign seq",
        "kb_claim_facts_group_dataset": "intervention outcome sign dataset_checksum seq",
    },
    sqlite_autoincrement=True,
)
factors = _table("kb_claim_factors", "claim_id* factor*", _fk("claim_id", "claims.id"))
# One row per (claim, factor) plus a '*' row per claim, with the claim's current tier: the
# structured filter of planning retrieval reads one index.
claim_filter = _table(
    "kb_claim_filter",
    "claim_id* factor* task outcome tier seq:int",
    _fk("claim_id", "claims.id"),
    index={"kb_claim_filter_lookup": "factor tier outcome seq"},
)
vectors = _table(
    "kb_vectors", "claim_id* embedder dim:int text_hash vector:blob", _fk("claim_id", "claims.id")
)
meta = _table("kb_meta", "key* value")
quarantines = _table(
    "kb_quarantines",
    "id* target_type target_id why actor created_at lifted_at? lifted_by? lift_reason?",
    index={"kb_quarantines_target": "target_id lifted_at"},
)
quarantine_members = _table(
    "kb_quarantine_members",
    "quarantine_id* claim_id* prev_tier",
    _fk("quarantine_id", "kb_quarantines.id", None),
    _fk("claim_id", "claims.id"),
    index={"kb_quarantine_members_claim": "claim_id"},
)
# Code hypotheses (0004): one row per checked module, content-addressed by the sha256 of
# its source; json is the CodeModule record, smoke the outcome of its smoke trial.
code_modules = _table(
    "kb_code_modules",
    "sha256* point name author author_kind campaign_id? source json smoke smoke_reason created_at updated_at",
    index={"kb_code_modules_point": "point name", "kb_code_modules_campaign": "campaign_id point"},
)

# ---------------------------------------------------------------- web and tools
# Secrets are kept as sha256: a token's secret part, a session's cookie value.
users = _table("web_users", "name* role created_at disabled_at?")
tokens = _table(
    "web_tokens",
    "id* user_name hash label created_at expires_at? revoked_at?",
    _fk("user_name", "web_users.name", None),
    index={"web_tokens_user": "user_name"},
)
sessions = _table(  # token_id: the token the session was opened with (0003; None before)
    "web_sessions",
    "id_hash* user_name csrf created_at expires_at revoked_at? token_id?",
    _fk("user_name", "web_users.name", None),
    index={"web_sessions_user": "user_name created_at", "web_sessions_token": "token_id"},
)
rate_events = _table(  # at: unix seconds
    "web_rate_events",
    "user_name action at:float",
    index={"web_rate_events_key": "user_name action at", "web_rate_events_at": "at"},
)
requests = _table(
    "web_reproduction_requests",
    "id* claim_id actor rationale status created_at",
    _fk("claim_id", "claims.id"),
    index={"web_reproduction_requests_claim": "claim_id"},
)
# One row per (caller, resource, ref_id): charging is idempotent.
charges = _table(
    "tool_charges",
    "caller* resource* ref_id* amount:float created_at updated_at",
    index={"tool_charges_window": "caller resource created_at"},
)
tool_jobs = _table(
    "tool_jobs",
    "handle* kind caller ref_id json created_at updated_at",
    index={"tool_jobs_caller": "caller kind created_at"},
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
