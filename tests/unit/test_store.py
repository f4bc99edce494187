from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from medloop.core.errors import NotFoundError, StoreError
from medloop.core.store import SQLiteStore
from medloop.core.store.migrations import MIGRATIONS


def test_migrations_apply_in_order_and_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
    assert store.migrate() == []  # nothing pending on reopen
    mode = store._q("PRAGMA journal_mode")[0][0]
    fk = store._q("PRAGMA foreign_keys")[0][0]
    assert (mode, fk) == ("wal", 1)


def test_store_newer_than_code_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "m.db").close()
    con = sqlite3.connect(tmp_path / "m.db")
    con.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'now')")
    con.commit()
    with pytest.raises(StoreError, match="9999_future"):
        SQLiteStore(tmp_path / "m.db")


def test_audit_chain_detects_tampering(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    for i in range(5):
        store.append_audit("alice", "claim.validate", "claim", f"c{i}", {"why": "ok"})
    assert store.verify_audit() == (True, None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._x("UPDATE audit SET actor='mallory' WHERE seq=3")
    # Bypass the trigger the way an attacker with file access would.
    store._x("DROP TRIGGER audit_no_update")
    store._x("UPDATE audit SET actor='mallory' WHERE seq=3")
    assert store.verify_audit() == (False, 3)


def test_missing_records_raise_not_found(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.db")
    with pytest.raises(NotFoundError, match="cmp_x"):
        store.get_campaign("cmp_x")
    with pytest.raises(NotFoundError):
        store.get_claim("clm_x")


def test_transaction_rolls_back_everything(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    with pytest.raises(RuntimeError), store.transaction():
        store.append_audit("a", "x", "claim", "c1", {})
        raise RuntimeError("crash mid-write")
    assert store.list_audit() == []
