"""Repositories keep the claim listing and the retrieval filter current themselves (the
0.1.0 triggers go), and hypotheses get an insertion-order column (0.1.0 ordered by
SQLite's rowid, which Postgres lacks)."""

import sqlalchemy as sa
from alembic import op

revision = "0002_repositories"
down_revision = "0001_legacy"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for trigger in (
            "web_claim_list_insert",
            "web_claim_list_update",
            "kb_claim_filter_facts",
            "kb_claim_filter_factor",
            "kb_claim_filter_tier",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.add_column("hypotheses", sa.Column("seq", sa.Integer, nullable=True))
    if op.get_context().dialect.name == "sqlite":
        op.execute("UPDATE hypotheses SET seq = rowid")
