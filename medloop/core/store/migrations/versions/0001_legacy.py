"""The schema of medloop 0.1.0's SQLite workspaces: its eight ordered migrations
(0001_initial, 0200-0203 knowledge, 0300-0301 web, 0400_tools). Nothing to run: such a
workspace is stamped here when it is first opened (`migrate.py`)."""

revision = "0001_legacy"
down_revision = None


def upgrade() -> None:
    pass
