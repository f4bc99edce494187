"""A long-running process (the dashboard) keeps one store: when Postgres drops its
connection (a server restart, an idle timeout), the call that saw it fails with one
clear StoreError, nothing half-written, and the next call works on a new connection."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from medloop.core.errors import StoreError
from medloop.core.store import open_store


def test_a_dropped_connection_fails_one_call_then_reconnects(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.meta.set("k", "v1")
    pid = store.db.all(sa.text("SELECT pg_backend_pid()"))[0][0]
    with psycopg.connect(
        postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError):
        store.meta.set("k", "v2")
    assert store.meta.get("k") == "v1"
    with store.transaction():  # transactions work again too
        store.meta.set("k", "v3")
        store.audit.append("a", "x", "store", "s", {})
    assert store.meta.get("k") == "v3" and store.audit.verify() == (True, None)
