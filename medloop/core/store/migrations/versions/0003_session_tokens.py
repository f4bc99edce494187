"""Dashboard sessions record the API token they were opened with, so revoking a token or
disabling a user ends its sessions at once; sessions are indexed by user and by token."""

import sqlalchemy as sa
from alembic import op

from medloop.core.store.schema import TEXT

revision = "0003_session_tokens"
down_revision = "0002_repositories"


def upgrade() -> None:
    op.add_column("web_sessions", sa.Column("token_id", TEXT, nullable=True))
    op.create_index("web_sessions_user", "web_sessions", ["user_name", "created_at"])
    op.create_index("web_sessions_token", "web_sessions", ["token_id"])
