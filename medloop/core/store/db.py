"""Connection plumbing every repository shares, and the few places SQLite and Postgres differ.

One connection per store object, guarded by a re-entrant lock so scheduler threads can
share it; other processes open their own. Statements outside `transaction()` commit one
by one; a transaction takes the database's write lock when it begins (SQLite's BEGIN
IMMEDIATE, a Postgres transaction-scoped advisory lock), so writers from several
processes queue instead of interleaving: read-then-write steps (the audit chain, idempotent
puts, sequence numbers that indexes follow) see the same serial order on both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from medloop.core.errors import ConflictError, StoreError
from medloop.core.store.base import Page

T = TypeVar("T")
CHUNK = 500  # ids per IN (...) list: far below either backend's parameter limit
_BEGIN = {
    "sqlite": ("BEGIN IMMEDIATE",),
    "postgresql": ("BEGIN", "SELECT pg_advisory_xact_lock(7236820963)"),  # 'medloop' writers
}


def store_url(target: str | Path) -> str:
    """A database URL from a URL or a SQLite file path."""
    if isinstance(target, Path) or "://" not in target:
        return f"sqlite:///{Path(target).expanduser().resolve()}" if str(target) != ":memory:" else "sqlite://"
    return target


def chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def eq(table: sa.Table, **values: Any) -> list[sa.ColumnElement[bool]]:
    """`column = value` for every value that is not None."""
    return [table.c[k] == v for k, v in values.items() if v is not None]


class Database:
    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in _BEGIN:
            raise StoreError(
                f"unsupported database URL {self.url.render_as_string()!r}",
                hint="use sqlite:///path/to/medloop.db or postgresql+psycopg://user@host/db",
            )
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            connect_args["check_same_thread"] = False
            if self.url.database:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(self.url, poolclass=sa.NullPool, connect_args=connect_args)
            if self.dialect == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
            self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open the store at {self.url.render_as_string()}: {exc}") from None
        self.insert: Callable[[sa.Table], Any] = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self.lock = threading.RLock()
        self._depth = 0

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Atomic unit of work. Nested calls join the outer transaction."""
        with self.lock:
            if self._depth == 0:
                for sql in _BEGIN[self.dialect]:
                    self._run(partial(self.conn.exec_driver_sql, sql))
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self.conn.exec_driver_sql("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                try:
                    self._run(partial(self.conn.exec_driver_sql, "COMMIT"))
                except StoreError:
                    self.conn.exec_driver_sql("ROLLBACK")  # SQLite keeps a failed COMMIT open
                    raise

    def _run(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sa.exc.IntegrityError as exc:
            raise ConflictError(f"the store refused a write: {exc.orig}") from None
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"database error: {exc.orig}".strip()) from None

    def all(self, stmt: sa.Executable, params: Any = None) -> list[sa.Row[Any]]:
        with self.lock:
            return self._run(lambda: list(self.conn.execute(stmt, params).all()))

    def write(self, stmt: sa.Executable, params: Any = None) -> int:
        """Run a write in a transaction (its own, or the caller's); returns the rows matched."""
        if params == []:
            return 0
        with self.transaction():
            return int(self._run(lambda: self.conn.execute(stmt, params)).rowcount)

    def put(
        self,
        table: sa.Table,
        rows: Sequence[dict[str, Any]],
        *,
        update: Sequence[str] = (),
        returning: Sequence[str] = (),
    ) -> list[sa.Row[Any]]:
        """Insert rows, leaving rows whose key exists alone, or with `update` set from the
        new row. Returns `returning` columns (default: the primary key) of the rows written."""
        if not rows:
            return []
        stmt, params = self.insert(table), list(rows)
        if len(rows) == 1:  # values may be SQL expressions (a sequence number)
            stmt, params = stmt.values(rows[0]), None
        if update:
            keys = [c.name for c in table.primary_key]
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in update}
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        stmt = stmt.returning(*(table.c[c] for c in returning or [c.name for c in table.primary_key]))
        with self.transaction():
            return self._run(lambda: list(self.conn.execute(stmt, params).all()))

    def page(
        self,
        stmt: sa.Select[Any],
        key: sa.ColumnElement[Any],
        convert: Callable[[sa.Row[Any]], T],
        *,
        after: str | None,
        limit: int,
        desc: bool = False,
    ) -> Page[T]:
        """One cursor page ordered by a unique `key` (a selected column); the cursor is the
        last key of the page."""
        if after:
            stmt = stmt.where(key < after if desc else key > after)
        rows = self.all(stmt.order_by(key.desc() if desc else key).limit(limit + 1))
        more = len(rows) > limit
        return Page([convert(r) for r in rows[:limit]], rows[limit - 1]._mapping[key] if more else None)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        for pragma in (f"busy_timeout = {busy_timeout_ms}", "journal_mode = WAL", "foreign_keys = ON"):
            dbapi_conn.execute(f"PRAGMA {pragma}")
        dbapi_conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints

    return on_connect
