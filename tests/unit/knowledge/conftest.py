"""Fixtures: a store and a knowledge base on the hash embedder + in-memory index (fast,
deterministic)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from medloop.core.store import SqlStore, open_store
from medloop.knowledge.embedders import HashEmbedder
from medloop.knowledge.graph import NetworkXGraph
from medloop.knowledge.service import KnowledgeService
from medloop.knowledge.vector import MemoryVectorIndex


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(tmp_path / "kb.db")
    yield s
    s.close()


@pytest.fixture
def make_kb(store: SqlStore, tmp_path: Path) -> Callable[..., KnowledgeService]:
    def build(graph_path: Path | None = None, *, reconcile: bool = True) -> KnowledgeService:
        kb = KnowledgeService(
            store, HashEmbedder(), MemoryVectorIndex(64), NetworkXGraph(graph_path or tmp_path / "graph.json")
        )
        if reconcile:
            kb.reconcile()
        return kb

    return build


@pytest.fixture
def kb(make_kb: Callable[..., KnowledgeService]) -> KnowledgeService:
    return make_kb()
