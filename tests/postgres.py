"""A throwaway Postgres cluster for tests: `initdb -A trust` and `pg_ctl start` on a free
127.0.0.1 port, as the `postgres` user when the tests run as root (initdb refuses root),
data under a temporary folder that user owns. Each test gets its own database, created
with an ICU en-US collation, so a sort that leaned on the server's collation (where "B"
sorts after "a") would fail the suite instead of passing by luck.

Used by the store's conformance suite and by any suite that needs a real Postgres
(fixtures `postgres_cluster` and `postgres_url` in tests/conftest.py).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists():
            return folder
    return None


def unavailable() -> str | None:
    """Why a cluster cannot start here, or None."""
    if pg_bin() is None:
        return "initdb/pg_ctl not found (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run initdb as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'medloop[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    root: Path
    port: int
    settings: tuple[str, ...] = ()
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as conn:
            conn.execute(
                f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        return self.url(name)

    def _run(self, *args: str) -> None:
        command = [str(pg_bin() / args[0]), *args[1:]]  # type: ignore[operator]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {s}" for s in self.settings
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(*settings: str) -> Cluster:
    """A running cluster; `settings` are `name=value` server options (e.g. fsync=off)."""
    root = Path(tempfile.mkdtemp(prefix="medloop-pg-"))
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
    return Cluster(root, _free_port(), settings).start()
