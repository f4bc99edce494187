"""Conformance of the vector index backends (memory, Chroma) and the graph index."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medloop.knowledge.base import VectorIndex
from medloop.knowledge.embedders import HashEmbedder, make_embedder
from medloop.knowledge.graph import NetworkXGraph
from medloop.knowledge.vector import ChromaVectorIndex, EmbedderMismatch, MemoryVectorIndex, chroma_client

TEXTS = [
    "dicece loss raises dice on liver",
    "dice loss lowers hd95 on kidney",
    "light augmentation raises dice on spleen",
    "learning rate 0.01 diverges",
    "nnunet augmentation helps unseen sites",
]
META = [
    {"task": "segmentation", "outcome": "dice", "factors": ["loss"]},
    {"task": "segmentation", "outcome": "hd95", "factors": ["loss"]},
    {"task": "segmentation", "outcome": "dice", "factors": ["augmentation"]},
    {"task": "segmentation", "outcome": "dice", "factors": ["lr"]},
    {"task": "segmentation", "outcome": "dice", "factors": ["augmentation", "loss"]},
]


@pytest.fixture(params=["memory", "chroma", "chroma-server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    if request.param == "memory":
        yield MemoryVectorIndex(64)
    elif request.param == "chroma":
        yield ChromaVectorIndex(
            chroma_client(tmp_path / "chroma"), embedder="hash", dim=64, name="test_claims"
        )
    else:
        url = request.getfixturevalue("chroma_url")
        name = f"test_{uuid.uuid4().hex[:12]}"
        yield ChromaVectorIndex(chroma_client(url), embedder="hash", dim=64, name=name)


def _load(index: VectorIndex) -> np.ndarray:
    vecs = HashEmbedder().embed(TEXTS)
    index.upsert([f"c{i}" for i in range(len(TEXTS))], vecs, META)
    return vecs


def test_query_returns_self_first_with_cosine(index: VectorIndex) -> None:
    vecs = _load(index)
    hits = index.query(vecs[2], k=3)
    assert hits[0][0] == "c2" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    brute = vecs @ vecs[2]
    assert hits[1][1] == pytest.approx(np.sort(brute)[-2], abs=1e-5)


def test_filters_equality_contains_and_or(index: VectorIndex) -> None:
    vecs = _load(index)
    assert {i for i, _ in index.query(vecs[0], k=10, where={"outcome": "hd95"})} == {"c1"}
    loss = {i for i, _ in index.query(vecs[0], k=10, where={"factors": {"$contains": "loss"}})}
    assert loss == {"c0", "c1", "c4"}
    both = index.query(
        vecs[0],
        k=10,
        where={
            "$and": [
                {"outcome": "dice"},
                {"$or": [{"factors": {"$contains": "lr"}}, {"factors": {"$contains": "loss"}}]},
            ]
        },
    )
    assert {i for i, _ in both} == {"c0", "c3", "c4"}
    assert index.query(vecs[0], k=10, where={"outcome": "nsd"}) == []


def test_upsert_replaces_delete_and_ids(index: VectorIndex) -> None:
    vecs = _load(index)
    index.upsert(["c0"], vecs[3:4], [{"task": "segmentation", "outcome": "nsd", "factors": ["lr"]}])
    assert index.query(vecs[3], k=1, where={"outcome": "nsd"})[0][0] == "c0"
    assert {i for i, _ in index.query(vecs[0], k=10, where={"outcome": "dice"})} == {"c2", "c3", "c4"}
    index.delete(["c1", "c0", "missing"])
    assert index.ids() == {"c2", "c3", "c4"}
    assert "c4" in {i for i, _ in index.query(vecs[4], k=1)}
    index.clear()
    assert index.ids() == set()
    assert index.query(vecs[0], k=3) == []


def test_memory_index_matches_brute_force_after_swaps() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = MemoryVectorIndex(16)
    idx.upsert([f"v{i}" for i in range(300)], vecs, [{"g": str(i % 3)} for i in range(300)])
    idx.delete([f"v{i}" for i in range(0, 300, 7)])
    keep = [i for i in range(300) if i % 7]
    q = vecs[5]
    want = sorted(((float(vecs[i] @ q), f"v{i}") for i in keep if i % 3 == 1), reverse=True)[:10]
    got = idx.query(q, k=10, where={"g": "1"})
    assert [g[0] for g in got] == [w[1] for w in want]


def test_chroma_collection_refuses_another_embedder(tmp_path: Path) -> None:
    client = chroma_client(tmp_path / "chroma")
    ChromaVectorIndex(client, embedder="hash", dim=64, name="test_claims")
    with pytest.raises(EmbedderMismatch, match=r"'hash' \(dim 64\).*'minilm' \(dim 384\)"):
        ChromaVectorIndex(client, embedder="minilm", dim=384, name="test_claims")


def test_hash_embedder_is_deterministic_and_normalised() -> None:
    e = make_embedder("hash")
    a, b = e.embed(["dice loss on liver", "dice loss on liver"]), e.embed(["", "loss dice"])
    assert np.allclose(a[0], a[1]) and np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert np.isfinite(b).all() and np.allclose(np.linalg.norm(b, axis=1), 1.0)
    base, near, far = e.embed(
        ["dicece loss raises dice", "dicece loss raises dice a lot", "weather in paris"]
    )
    assert float(near @ base) > float(far @ base)


def test_unknown_embedder_is_a_clear_error() -> None:
    from medloop.core.errors import SpecError

    with pytest.raises(SpecError, match="MEDLOOP_EMBEDDER='bert'"):
        make_embedder("bert")


def test_graph_roundtrip_descendants_and_atomic_save(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    g = NetworkXGraph(path)
    g.upsert_edge("clm_1", "trl_1", "derived_from")
    g.upsert_edge("clm_2", "clm_1", "derived_from")
    g.upsert_edge("clm_1", "loss:dice", "about")
    for node, kind in (("clm_1", "claim"), ("clm_2", "claim"), ("trl_1", "trial"), ("loss:dice", "loss")):
        g.upsert_node(node, kind)
    g.watermark = 3
    g.save()
    assert not list(tmp_path.glob(".graph-*"))  # no temp file left behind
    raw = json.loads(path.read_text())
    assert raw["format"] == "medloop-graph/1" and raw["watermark"] == 3
    h = NetworkXGraph(path)
    assert h.watermark == 3 and h.nodes("claim") == {"clm_1", "clm_2"}
    assert h.descendants("trl_1", kinds=["derived_from"], direction="in") == {"clm_1", "clm_2"}
    assert h.descendants("clm_2", kinds=["derived_from"]) == {"clm_1", "trl_1"}
    assert ("loss:dice", "about") in h.neighbors("clm_1", direction="out")
    path.write_text("{not json")
    broken = NetworkXGraph(path)
    assert broken.watermark == 0 and broken.nodes() == set()


def test_graph_save_streams_the_node_link_layout(tmp_path: Path) -> None:
    """The file is what `nx.node_link_data` gives (hostile-looking text included), written
    without building that copy: the save's peak allocation stays far below the copy's."""
    import tracemalloc

    import networkx as nx

    path = tmp_path / "g.json"
    g = NetworkXGraph(path)
    for i in range(5000):
        g.upsert_node(f"clm_{i}", "claim", title=f'"quoted" \\ {i} \u2028 <script>', effect=i / 7)
        g.upsert_edge(f"clm_{i}", f"site:{i % 9}", "about", weight=float("nan") if i == 3 else 0.5)
    g.watermark = 42
    g.save()
    expected = {"format": "medloop-graph/1", "watermark": 42, "graph": nx.node_link_data(g.g, edges="edges")}
    assert json.dumps(json.loads(path.read_text()), sort_keys=True) == json.dumps(expected, sort_keys=True)
    h = NetworkXGraph(path)
    assert h.watermark == 42 and h.nodes("claim") == g.nodes("claim") and h.g.number_of_edges() == 5000

    tracemalloc.start()
    g.save()
    _, saving = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    nx.node_link_data(g.g, edges="edges")
    _, copying = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert saving < copying / 10, (saving, copying)


def test_embedding_text_drops_parenthesised_statistics_only() -> None:
    from medloop.knowledge.model import embedding_text

    s = "On D1 (liver CT), changing lr 0.001 -> 0.0003 raised dice by +0.012 (95% CI +0.001 to +0.02; p=0.01): supported"
    assert (
        embedding_text(s) == "On D1 (liver CT), changing lr 0.001 -> 0.0003 raised dice by +0.012: supported"
    )
    assert embedding_text("(p=0.1)") == "(p=0.1)"  # never an empty text
