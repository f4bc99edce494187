"""Code hypotheses: the knowledge base keeps every checked code module (source, record,
smoke-trial outcome) content-addressed by its sha256."""

import sqlalchemy as sa
from alembic import op

from medloop.core.store.schema import TEXT

revision = "0004_code_modules"
down_revision = "0003_session_tokens"


def upgrade() -> None:
    op.create_table(
        "kb_code_modules",
        *(
            sa.Column(name, TEXT, primary_key=name == "sha256", nullable=name == "campaign_id")
            for name in [
                "sha256",
                "point",
                "name",
                "author",
                "author_kind",
                "campaign_id",
                "source",
                "json",
                "smoke",
                "smoke_reason",
                "created_at",
                "updated_at",
            ]
        ),
    )
    op.create_index("kb_code_modules_point", "kb_code_modules", ["point", "name"])
    op.create_index("kb_code_modules_campaign", "kb_code_modules", ["campaign_id", "point"])
