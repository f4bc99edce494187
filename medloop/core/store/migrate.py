"""Schema revisions with Alembic, run when a store opens (configured here; no alembic.ini).

A new database is created from `schema.metadata` and stamped at the head (Alembic's
"create from scratch" recipe); an existing one runs the revisions it lacks. A SQLite
workspace made by medloop 0.1.0 (its own `schema_migrations` table) is stamped at
`0001_legacy` first, and a row added to that table makes 0.1.0 refuse the upgraded file.
It all runs under the store's write lock: concurrent openers wait, then find it done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from medloop.core.errors import StoreError
from medloop.core.records import utcnow
from medloop.core.store import schema
from medloop.core.store.db import Database

HEAD = "0004_code_modules"
LEGACY = {
    "0001_initial",
    "0200_knowledge_model",
    "0201_knowledge_fingerprints",
    "0202_knowledge_claim_filter",
    "0203_knowledge_relation_indexes",
    "0300_web_auth",
    "0301_web_listings",
    "0400_tools",
}
LEGACY_MARK = "0500_alembic"  # unknown to 0.1.0, which then refuses to open the file
_VERSION = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def upgrade(db: Database) -> None:
    if _version(db) == HEAD:
        return
    with db.transaction():
        version = _version(db)
        if version == HEAD:
            return
        tables = set(sa.inspect(db.conn).get_table_names())
        if not tables - {"alembic_version"}:
            schema.metadata.create_all(db.conn)
            _VERSION.create(db.conn, checkfirst=True)  # Alembic's own table, stamped by hand:
            db.write(sa.insert(_VERSION), {"version_num": HEAD})  # no alembic import here
            return
        if version is None:
            _adopt_legacy(db, tables)
        elif version not in _revisions():
            raise StoreError(
                f"the store at {db.url.render_as_string()} has schema revision {version}, "
                "which this medloop does not know",
                hint="upgrade medloop or point MEDLOOP_DB_URL at another database",
            )
        _alembic(db, "upgrade", HEAD)


def _version(db: Database) -> str | None:
    if not sa.inspect(db.conn).has_table("alembic_version"):
        return None
    rows = db.all(sa.text("SELECT version_num FROM alembic_version"))
    return str(rows[0][0]) if rows else None


def _adopt_legacy(db: Database, tables: set[str]) -> None:
    where = db.url.render_as_string()
    if "schema_migrations" not in tables:
        raise StoreError(
            f"{where} holds tables but is not a medloop store", hint="point MEDLOOP_DB_URL elsewhere"
        )
    done = {r[0] for r in db.all(sa.text("SELECT name FROM schema_migrations"))}
    if done - LEGACY:
        raise StoreError(
            f"the store at {where} has migrations this medloop does not know: {sorted(done - LEGACY)}",
            hint="upgrade medloop or point MEDLOOP_WORKSPACE at another workspace",
        )
    if done != LEGACY:
        raise StoreError(
            f"the store at {where} lacks 0.1.0 migrations {sorted(LEGACY - done)}",
            hint="open it once with medloop 0.1.0, which completes them, then with this version",
        )
    _alembic(db, "stamp", "0001_legacy")
    db.write(sa.text("INSERT INTO schema_migrations VALUES (:n, :at)"), {"n": LEGACY_MARK, "at": utcnow()})


def _config(db: Database) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = db.conn
    return config


def _revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(__file__).parent / "migrations"))
    return {r.revision for r in script.walk_revisions()}


def _alembic(db: Database, command: str, revision: str) -> None:
    from alembic import command as commands

    getattr(commands, command)(_config(db), revision)
