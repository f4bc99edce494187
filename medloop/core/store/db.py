"""Connection plumbing every repository shares, the statement builders they query with,
and the few places SQLite and Postgres differ.

One connection per store object, guarded by a re-entrant lock so scheduler threads can
share it; other processes open their own. A statement outside `transaction()` commits on
its own (atomic, and on SQLite serialised by its write lock). A transaction takes the
database's write lock when it begins (SQLite's BEGIN IMMEDIATE, a Postgres
transaction-scoped advisory lock), so read-then-write steps (the audit chain, idempotent
multi-row puts, sequence numbers indexes follow) run in one serial order on both backends.

Statements are built once per shape (`select`, `update`, `upsert` are cached) and run
with parameters: building and hashing a SQLAlchemy statement costs more than running it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from medloop.core.errors import ConflictError, NotFoundError, StoreError
from medloop.core.store.base import Page
from medloop.core.store.mapper import Mapper, R

T = TypeVar("T")
Row = sa.Row[*tuple[Any, ...]]
CHUNK = 500  # ids per IN (...) list: far below either backend's parameter limit
_BEGIN = {
    "sqlite": ("BEGIN IMMEDIATE",),
    "postgresql": ("BEGIN", "SELECT pg_advisory_xact_lock(7236820963)"),  # 'medloop' writers
}
_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def store_url(target: str | Path) -> str:
    """A database URL from a URL or a SQLite file path."""
    if isinstance(target, Path) or "://" not in target:
        return (
            f"sqlite:///{Path(target).expanduser().resolve()}" if str(target) != ":memory:" else "sqlite://"
        )
    return target


def chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def given(**values: Any) -> dict[str, Any]:
    """The filters that were given (not None)."""
    return {k: v for k, v in values.items() if v is not None}


@functools.cache
def select(
    table: sa.Table,
    where: tuple[str, ...] = (),
    *,
    cols: tuple[str, ...] | None = None,
    within: tuple[str, ...] = (),
    fixed: tuple[tuple[str, int], ...] = (),
    order: tuple[str, ...] = (),
    desc: bool = False,
    after: str | None = None,
    limit: bool = False,
) -> sa.Select[Any]:
    """SELECT `cols` (default all) WHERE `c = :c` for `where`, `c IN :c` for `within`,
    `c IN (:c_0, .. :c_n-1)` for `fixed` (short lists: no SQL rendered per call, as for
    `within`), `after > :after` (< when `desc`), ORDER BY `order`, LIMIT :limit."""
    c = table.c
    stmt = sa.select(*(c[n] for n in cols)) if cols else sa.select(table)
    stmt = stmt.where(*(c[n] == sa.bindparam(n) for n in where))
    stmt = stmt.where(*(c[n].in_(sa.bindparam(n, expanding=True)) for n in within))
    stmt = stmt.where(*(c[n].in_([sa.bindparam(f"{n}_{i}") for i in range(k)]) for n, k in fixed))
    if after:
        stmt = stmt.where(c[after] < sa.bindparam("after") if desc else c[after] > sa.bindparam("after"))
    stmt = stmt.order_by(*(c[n].desc() if desc else c[n] for n in order))
    return stmt.limit(sa.bindparam("limit")) if limit else stmt


@functools.cache
def update(table: sa.Table, where: tuple[str, ...], unset: tuple[str, ...] = ()) -> sa.Update:
    """UPDATE ... WHERE `c = :_c` for `where` (AND `c IS NULL` for `unset`); the other
    parameters are the columns to set."""
    c = table.c
    return sa.update(table).where(
        *(c[n] == sa.bindparam(f"_{n}") for n in where), *(c[n].is_(None) for n in unset)
    )


@functools.cache
def upsert(dialect: str, table: sa.Table, set_: tuple[str, ...], returning: tuple[str, ...]) -> Any:
    """INSERT that leaves an existing key alone, or sets `set_` from the new row; the
    dialects' own ON CONFLICT (both backends have it)."""
    stmt: Any = _INSERT[dialect](table)
    if set_:
        keys = [c.name for c in table.primary_key]
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in set_})
    else:
        stmt = stmt.on_conflict_do_nothing()
    return stmt.returning(*(table.c[c] for c in returning or [c.name for c in table.primary_key]))


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
        target = self.url
        self.read_only = False
        if self.dialect == "sqlite":
            connect_args["check_same_thread"] = False
            path = Path(self.url.database) if self.url.database else None
            if path is not None and _cannot_write(path):
                # Reads still work (campaign list, show); a write says why it cannot.
                self.read_only = True
                target = _read_only_url(path)
            elif path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Transactions are ours (BEGIN/COMMIT in autocommit mode): no pool reset on close.
            engine = sa.create_engine(
                target, poolclass=sa.NullPool, pool_reset_on_return=None, connect_args=connect_args
            )
            if self.dialect == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms, self.read_only))
            self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except ImportError as exc:  # the database driver is an extra
            raise StoreError(
                f"cannot open the store at {self.url.render_as_string()}: {exc}",
                hint="pip install 'medloop[postgres]'" if self.dialect == "postgresql" else None,
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self.url.render_as_string()}: {exc}") from None
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
                for sql in ("BEGIN",) if self.read_only else _BEGIN[self.dialect]:
                    self._run(functools.partial(self.conn.exec_driver_sql, sql))
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._rollback()
                raise
            self._depth -= 1
            if self._depth == 0:
                try:
                    self._run(functools.partial(self.conn.exec_driver_sql, "COMMIT"))
                except StoreError:
                    self._rollback()  # SQLite keeps a failed COMMIT open
                    raise

    def _run(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sa.exc.IntegrityError as exc:
            raise ConflictError(f"the store refused a write: {exc.orig}") from None
        except sa.exc.DBAPIError as exc:  # OperationalError included
            if exc.connection_invalidated:  # the server dropped us: the next call reconnects
                self.conn.rollback()
            elif self.read_only and "readonly" in str(exc.orig):
                raise StoreError(
                    f"the store {self.url.database} is read-only for this user; this command needs to write",
                    hint="run it where the workspace is writable, or point MEDLOOP_WORKSPACE elsewhere",
                ) from None
            raise StoreError(f"database error: {exc.orig}".strip()) from None

    def _rollback(self) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):  # on a lost connection nothing is left to undo
            self.conn.exec_driver_sql("ROLLBACK")

    def all(self, stmt: sa.Executable, params: Any = None) -> list[Row]:
        with self.lock:
            return self._run(lambda: list(self.conn.execute(stmt, params).all()))

    def write(self, stmt: sa.Executable, params: Any = None) -> int:
        """Run a write; returns the number of rows it matched."""
        if params == []:
            return 0
        with self.lock:
            return int(self._run(lambda: self.conn.execute(stmt, params)).rowcount)

    def put(
        self,
        table: sa.Table,
        rows: Sequence[dict[str, Any]],
        *,
        set_: Sequence[str] = (),
        returning: Sequence[str] = (),
    ) -> list[Row]:
        """Insert rows, leaving rows whose key exists alone, or with `set_` columns taken
        from the new row. Returns `returning` columns (default: the key) of rows written."""
        if not rows:
            return []
        return self.all(upsert(self.dialect, table, tuple(set_), tuple(returning)), list(rows))

    def page(
        self,
        table: sa.Table,
        convert: Callable[[Row], T],
        *,
        after: str | None,
        limit: int,
        key: str = "id",
        cols: tuple[str, ...] | None = None,
        desc: bool = False,
        within: Mapping[str, Sequence[Any] | None] | None = None,
        where: dict[str, Any] | None = None,
    ) -> Page[T]:
        """One cursor page ordered by the unique column `key`; the cursor is the page's
        last key. `where`: column = value filters (None: any); `within`: column IN values."""
        where = given(**(where or {}))
        lists = {k: list(v) for k, v in (within or {}).items() if v}
        fixed = tuple((k, len(v)) for k, v in lists.items())
        stmt = select(table, tuple(where), cols=cols, fixed=fixed, order=(key,), desc=desc,
                      after=key if after else None, limit=True)  # fmt: skip
        where |= {f"{k}_{i}": x for k, v in lists.items() for i, x in enumerate(v)}
        rows = self.all(stmt, {**where, "limit": limit + 1} | ({"after": after} if after else {}))
        more = len(rows) > limit
        return Page([convert(r) for r in rows[:limit]], rows[limit - 1]._mapping[key] if more else None)


def _sqlite_pragmas(busy_timeout_ms: int, read_only: bool = False) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        if not read_only:  # setting the journal mode is a write
            _switch_to_wal(dbapi_conn, busy_timeout_ms)
            dbapi_conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints

    return on_connect


def _switch_to_wal(dbapi_conn: Any, busy_timeout_ms: int) -> None:
    """`PRAGMA journal_mode = WAL` needs the exclusive lock and SQLite answers "database
    is locked" at once, without its busy handler, while another process creates or
    switches the same new file: retry within the busy timeout like any locked write."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.005
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _cannot_write(path: Path) -> bool:
    """An existing SQLite file this process may not write (file or folder read-only, or a
    read-only file system): SQLite needs both for its journal."""
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _read_only_url(path: Path) -> sa.URL:
    """SQLite URI for reading without writing anything, not even the WAL index. Without a
    WAL file the database is all in the main file: `immutable` then needs no lock file."""
    wal = path.with_name(path.name + "-wal")
    query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sa.make_url(f"sqlite:///file:{quote(str(path))}?{query}&uri=true")


class Repo(Generic[R]):
    """What most repositories share, written once: one table read and written through
    its mapper, by key and by insert."""

    mapper: ClassVar[Mapper[Any]]
    missing: ClassVar[str] = "{key} not found"  # NotFoundError message; `hint` goes with it
    hint: ClassVar[str | None] = None

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> R:
        found: R = one(self.db, self.mapper, key, self.missing.format(key=key), self.hint)
        return found

    def add(self, record: R) -> None:
        self.db.write(sa.insert(self.mapper.table), self.mapper.row(record))


def one(db: Database, mapper: Mapper[R], key: str, missing: str, hint: str | None = None) -> R:
    """The record whose primary key is `key`, or NotFoundError(missing)."""
    name = mapper.table.primary_key.columns[0].name
    rows = db.all(select(mapper.table, (name,)), {name: key})
    if not rows:
        raise NotFoundError(missing, hint=hint)
    return mapper.record(rows[0])


def matching(db: Database, mapper: Mapper[R], order: tuple[str, ...], **values: Any) -> list[R]:
    """The records whose columns equal the given values (None: any), in `order`."""
    where = given(**values)
    return [mapper.record(r) for r in db.all(select(mapper.table, tuple(where), order=order), where)]
