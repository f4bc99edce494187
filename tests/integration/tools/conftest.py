"""Fixtures of the tool integration tests: a phantom dataset and the environment a
`medloop` subprocess needs to run this source tree on a fresh workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medloop.experiments.dataset import synth_phantom

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom(
        tmp_path_factory.mktemp("data") / "Dataset901_Phantom", cases=8, test_cases=2, seed=1
    )


@pytest.fixture
def server_env(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for `python -m medloop ...`: this tree first on the path, the test
    workspace, the fast hash embedder and an in-memory vector index."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    )
    monkeypatch.setenv("MEDLOOP_VECTOR_INDEX", "memory")
    return dict(os.environ)
