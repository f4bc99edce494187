"""Schema migrations: a workspace made by medloop 0.1.0 (its SQLite store with eight ordered
migrations) opens and upgrades in place without loss; what cannot be upgraded is refused
with one clear line. Fixtures: tests/fixtures/store_0_1_0 (made by make_fixture.py)."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from medloop.core.accounts import ApiToken, ReproductionRequest, User, WebSession
from medloop.core.errors import StoreError
from medloop.core.records import (
    AuditEntry,
    Campaign,
    Claim,
    ClaimFacts,
    Edge,
    Entity,
    Evidence,
    Hypothesis,
    Quarantine,
    Trial,
)
from medloop.core.store import open_store, schema
from medloop.core.store.migrate import HEAD, LEGACY, LEGACY_MARK
from tests.contract.store.conftest import unzip

_MODELS: dict[str, Any] = {
    "campaigns": Campaign,
    "hypotheses": Hypothesis,
    "trials": Trial,
    "claims": Claim,
    "evidence": Evidence,
    "audit": AuditEntry,
    "entities": Entity,
    "edges": Edge,
    "facts": ClaimFacts,
    "quarantines": Quarantine,
    "users": User,
    "tokens": ApiToken,
    "sessions": WebSession,
    "requests": ReproductionRequest,
}


def _json(x: Any) -> Any:
    return x.model_dump(mode="json") if hasattr(x, "model_dump") else x


def _today(key: str, value: Any) -> Any:
    """A 0.1.0 record as today's model reads it: fields added since then take their defaults."""
    model = _MODELS.get(key)
    if model is None:
        return value
    if isinstance(value, dict):
        return {k: _today(key, v) for k, v in value.items()}
    if isinstance(value, list):
        return [model.model_validate(v).model_dump(mode="json") for v in value]
    return value


def test_a_0_1_0_workspace_upgrades_in_place_without_loss(tmp_path: Path) -> None:
    path = unzip("workspace.db", tmp_path / "medloop.db")
    expected = json.loads(
        gzip.decompress((Path(__file__).parents[1] / "fixtures/store_0_1_0/expected.json.gz").read_bytes())
    )
    store = open_store(path)
    campaigns = store.campaigns.list().items
    trials = store.trials.list(limit=100_000).items
    claims = store.claims.list(limit=100_000).items
    ids = [c.id for c in claims]
    raw = store.db.all
    got = {
        "campaigns": [_json(c) for c in campaigns],
        "cycles": {c.id: store.cycles.list(c.id) for c in campaigns},
        "hypotheses": {c.id: [_json(h) for h in store.cycles.hypotheses(c.id)] for c in campaigns},
        "trials": [_json(t) for t in trials],
        "claims": [_json(c) for c in claims],
        "evidence": {c: [_json(e) for e in store.evidence.list(c)] for c in ids},
        "audit": [_json(a) for a in store.audit.list(limit=100_000)],
        "entities": [
            _json(e) for e in store.db.all(sa.select(schema.entities.c.id).order_by(schema.entities.c.id))
        ],
        "edges": [_json(e) for e in store.graph.edges(limit=100_000)],
        "facts": [_json(f) for f in store.facts.list(limit=100_000)],
        "vectors": {
            k: [v.embedder, v.dim, v.text_hash, v.vector.hex()] for k, v in store.vectors.get(ids).items()
        },
        "meta": [[k, store.meta.get(k)] for (k,) in raw(sa.text("SELECT key FROM kb_meta ORDER BY key"))],
        "quarantines": [_json(q) for q in store.quarantines.list()],
        "users": [_json(u) for u in store.users.list()],
        "tokens": [_json(t) for t in store.tokens.list()],
        "sessions": [
            _json(store.sessions.get(h))
            for (h,) in raw(sa.text("SELECT id_hash FROM web_sessions ORDER BY id_hash"))
        ],
        "rate_events": [
            list(r) for r in raw(sa.text("SELECT user_name, action, at FROM web_rate_events ORDER BY at"))
        ],
        "requests": [_json(r) for r in store.reviews.list()],
        "charges": [
            list(r)
            for r in raw(
                sa.text(
                    "SELECT caller, resource, ref_id, amount, created_at FROM tool_charges ORDER BY ref_id, resource"
                )
            )
        ],
        "tool_jobs": [_json(j) for j in store.ledger.list_jobs()],
        "trial_rows": {c.id: store.listings.trials(campaign_id=c.id, limit=100_000).items for c in campaigns},
        "claim_rows": store.listings.claims(limit=100_000).items,
        "trial_curve": {c.id: [list(r) for r in store.listings.trial_curve(c.id)] for c in campaigns},
        "find_claim_ids": store.facts.find_ids(
            tiers=["supported", "reproduced", "validated", "refuted"], limit=1000
        ),
    }
    got["entities"] = [_json(store.graph.get_entity(r[0])) for r in got["entities"]]
    for job in got["tool_jobs"]:
        del job["schema_version"]  # 0.1.0 returned tool jobs as plain dicts
    assert expected["trials"] and expected["claims"] and expected["edges"] and expected["audit"]
    for key in expected:
        assert got[key] == _today(key, expected[key]), key
    assert store.audit.verify() == (True, None)  # the 0.1.0 chain verifies after the upgrade
    names = {r[0] for r in raw(sa.text("SELECT name FROM schema_migrations"))}
    assert names == LEGACY | {LEGACY_MARK}  # 0.1.0 refuses a file with a migration it does not know
    assert raw(sa.text("SELECT version_num FROM alembic_version"))[0][0] == HEAD
    store.claims.set_tier(ids[0], "rejected")  # the listing and filter follow without 0.1.0's triggers
    assert store.listings.claims(tiers=["rejected"]).items[0]["id"] == ids[0]
    store.close()
    assert open_store(path).audit.verify() == (True, None)  # reopening is a no-op


def test_an_upgraded_workspace_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    old = open_store(unzip("empty.db", tmp_path / "old.db"))
    new = open_store(tmp_path / "new.db")
    diffs = compare_metadata(
        MigrationContext.configure(old.db.conn, opts={"compare_type": False}), schema.metadata
    )
    # Left out: 0.1.0's own bookkeeping table (it makes 0.1.0 refuse the upgraded file);
    # nullability of one-column primary keys and inline foreign keys' ON DELETE, which
    # SQLAlchemy does not read back from 0.1.0's DDL (compared with PRAGMAs below).
    flat = [d[0] if isinstance(d, list) else d for d in diffs]
    skipped = ("add_fk", "remove_fk", "modify_nullable")
    assert [
        d
        for d in flat
        if d[0] not in skipped and not (d[0] == "remove_table" and d[1].name == "schema_migrations")
    ] == []
    for d in flat:
        if d[0] == "modify_nullable":
            assert schema.metadata.tables[d[2]].c[d[3]].primary_key, d

    def pragmas(store: object, what: str) -> dict[str, list[tuple[Any, ...]]]:
        db = store.db  # type: ignore[attr-defined]
        return {
            t: sorted(tuple(r) for r in db.all(sa.text(f"PRAGMA {what}('{t}')")))
            for t in schema.metadata.tables
        }

    assert pragmas(old, "foreign_key_list") == pragmas(new, "foreign_key_list")
    assert {t: [r[1] for r in rows] for t, rows in pragmas(old, "table_info").items()} == {
        t: [r[1] for r in rows] for t, rows in pragmas(new, "table_info").items()
    }
    triggers = {r[0] for r in old.db.all(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}
    assert triggers == {
        r[0] for r in new.db.all(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    }
    assert triggers == {"audit_no_update", "audit_no_delete"}
    assert [r[0] for r in new.db.all(sa.text("PRAGMA journal_mode"))] == ["wal"]
    assert [r[0] for r in new.db.all(sa.text("PRAGMA foreign_keys"))] == [1]


def _damage(tmp_path: Path, sql: str, name: str = "empty.db") -> Path:
    path = unzip(name, tmp_path / "x.db")
    con = sqlite3.connect(path)
    con.executescript(sql)
    con.close()
    return path


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM schema_migrations WHERE name = '0301_web_listings'", "lacks 0.1.0 migrations"),
        ("INSERT INTO schema_migrations VALUES ('0999_other', 'now')", "does not know: \\['0999_other'\\]"),
        ("DROP TABLE schema_migrations", "not a medloop store"),
    ],
)
def test_workspaces_that_cannot_be_upgraded_are_refused(tmp_path: Path, sql: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(_damage(tmp_path, sql))


def test_a_store_newer_than_this_code_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path / "m.db").close()
    con = sqlite3.connect(tmp_path / "m.db")
    con.execute("UPDATE alembic_version SET version_num = '9999_future'")
    con.commit()
    with pytest.raises(StoreError, match="9999_future"):
        open_store(tmp_path / "m.db")


def test_head_is_the_last_revision_shipped() -> None:
    from alembic.script import ScriptDirectory

    from medloop.core.store import migrate

    assert ScriptDirectory(str(Path(migrate.__file__).parent / "migrations")).get_heads() == [HEAD]


def _open(path: str, out: Any) -> None:
    store = open_store(path)
    out.put(store.audit.append("p", "open", "store", path, {}).seq)


def test_processes_opening_an_old_workspace_at_once_upgrade_it_once(tmp_path: Path) -> None:
    path = unzip("workspace.db", tmp_path / "medloop.db")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(str(path), out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    store = open_store(path)
    assert sorted(out.get(timeout=10) for _ in procs) == [19, 20] and store.audit.verify() == (True, None)
    assert len(store.db.all(sa.text(f"SELECT 1 FROM schema_migrations WHERE name = '{LEGACY_MARK}'"))) == 1


def test_store_urls_from_settings(tmp_path: Path) -> None:
    from medloop.core.errors import SpecError
    from medloop.core.settings import Settings

    assert Settings(workspace=tmp_path).store_url == f"sqlite:///{tmp_path.resolve() / 'medloop.db'}"
    pg = Settings(db_url="postgres://u:p@db:5432/medloop")
    assert pg.store_url == "postgresql+psycopg://u:p@db:5432/medloop" and pg.postgres
    with pytest.raises(SpecError, match="not a SQLite file"):
        _ = pg.db_path
    assert Settings(db_url="sqlite:///rel/x.db").store_url == f"sqlite:///{Path('rel/x.db').resolve()}"
    with pytest.raises(SpecError, match="mysql"):
        _ = Settings(db_url="mysql://x/y").store_url


def test_opening_while_another_process_holds_the_write_lock_waits_for_it(tmp_path: Path) -> None:
    # Another writer holds RESERVED on a new database file: SQLite refuses the switch to
    # WAL at once ("database is locked", no busy handler: it would deadlock), which made
    # two processes creating one workspace at once fail in CI. The open must wait instead.
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store = open_store(path)
    finally:
        release.join()
        other.close()
    assert [r[0] for r in store.db.all(sa.text("PRAGMA journal_mode"))] == ["wal"]
    assert store.audit.append("p", "open", "store", "s", {}).seq == 1


def test_a_postgres_url_without_its_driver_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pip install medloop` has no database driver for Postgres (the `postgres` extra)."""
    import sys

    from medloop.core.errors import StoreError

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(StoreError) as err:
        open_store("postgresql+psycopg://medloop@127.0.0.1:1/medloop")
    assert "psycopg" in err.value.message and "\n" not in err.value.message
    assert err.value.hint == "pip install 'medloop[postgres]'"
