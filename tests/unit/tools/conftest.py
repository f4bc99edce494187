"""Fixtures of the tool tests: a workspace on the hash embedder + in-memory vector index
(fast, deterministic), a replay table, a small phantom dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medloop.core.settings import Settings
from medloop.experiments.dataset import synth_phantom
from medloop.tools.catalog import default_registry
from medloop.tools.context import Caller, ToolContext
from medloop.tools.registry import Registry
from tests.unit.tools.helpers import replay_context, replay_table


@pytest.fixture
def tool_settings(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MEDLOOP_VECTOR_INDEX", "memory")
    return Settings()


@pytest.fixture
def registry() -> Registry:
    return default_registry()


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return replay_table(tmp_path / "replay")


@pytest.fixture
def ctx(tool_settings: Settings, table: Path) -> Iterator[ToolContext]:
    context = replay_context(tool_settings, table, Caller("alice"))
    yield context
    jobs = context.shared.get("trial_jobs")
    if jobs is not None:
        jobs.close()


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom(
        tmp_path_factory.mktemp("data") / "Dataset901_Phantom", cases=8, test_cases=2, seed=1
    )
