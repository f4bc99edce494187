"""Shared fixtures. Tests run offline, each in its own workspace under tmp_path.

`require(backend, available, why)` skips a test whose backend is missing, unless CI
listed that backend in MEDLOOP_REQUIRE, in which case the skip becomes a failure.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from medloop.core.settings import OFFLINE_ENV, Settings
from tests.chroma_server import ChromaServer, chroma_cli, start_server
from tests.postgres import Cluster, start_cluster, unavailable

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

REQUIRED = {p.strip() for p in os.environ.get("MEDLOOP_REQUIRE", "").split(",") if p.strip()}


def require(backend: str, available: bool, why: str = "") -> None:
    """Skip (locally) or fail (when CI requires `backend`) if it is not available."""
    if available:
        return
    message = f"{backend} not available: {why}" if why else f"{backend} not available"
    if backend in REQUIRED:
        pytest.fail(f"MEDLOOP_REQUIRE lists {backend!r} but {message}", pytrace=False)
    pytest.skip(message)


_NUMBA_BEFORE = pytest.StashKey[bool]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Put Python's fault handler back before every test.

    A Ray driver in this process (`ray.init` ... `ray.shutdown`) leaves signal handlers for
    SIGSEGV and friends that print nothing to the terminal: a crash in a later test then
    killed the run without naming the test. `faulthandler.enable` is a no-op while enabled, hence the
    disable first; the file is pytest's own duplicate of the real stderr. Only the crashing
    thread is dumped: with every thread, CI's log kept the idle ones and cut the one that
    crashed.
    """
    from _pytest.faulthandler import fault_handler_stderr_fd_key

    fd = item.config.stash.get(fault_handler_stderr_fd_key, None)
    if fd is not None:
        faulthandler.disable()
        faulthandler.enable(file=fd, all_threads=False)
    item.stash[_NUMBA_BEFORE] = "numba" in sys.modules  # before the test's fixtures run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test not marked `numba` must not bring numba (librosa's JIT) into this process,
    neither in its body nor in its fixtures.

    CI's shared test process died of a segmentation fault twice, at the first librosa call
    made in it, while the same code ran cleanly in job subprocesses and in fresh processes
    here. Tests that run librosa in-process are marked `numba` and `make test` gives them a
    pytest process of their own, as it does the Ray drivers; the product itself keeps numba
    out of its long-lived processes (the orchestrator and the web server; jobs use it).
    """
    yield
    if (
        not item.stash.get(_NUMBA_BEFORE, True)
        and "numba" in sys.modules
        and item.get_closest_marker("numba") is None
    ):
        pytest.fail(
            f"{item.nodeid} imported numba into the shared test process: mark it "
            "@pytest.mark.numba (make test runs those in a process of their own)",
            pytrace=False,
        )


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh workspace; MEDLOOP_WORKSPACE points at it for code that reads settings."""
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.setenv("MEDLOOP_WORKSPACE", str(ws))
    monkeypatch.setenv("MEDLOOP_EMBEDDER", os.environ.get("MEDLOOP_TEST_EMBEDDER", "hash"))
    yield ws


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One throwaway Postgres cluster for the whole run (tests/postgres.py)."""
    why = unavailable()
    require("postgres", why is None, why or "")
    # Durability off: the cluster dies with the run.
    cluster = start_cluster("fsync=off", "synchronous_commit=off", "full_page_writes=off")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """A fresh, empty database of the session's cluster (SQLAlchemy URL)."""
    return postgres_cluster.create_database()


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """One real Chroma server (`chroma run`) for the whole run (tests/chroma_server.py)."""
    require("chroma_server", chroma_cli() is not None, "the chroma CLI is not installed")
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chroma_url(chroma_server: ChromaServer) -> str:
    """The session's Chroma server; each test uses its own collection names."""
    return chroma_server.url
