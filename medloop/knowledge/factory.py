"""Settings -> a concrete knowledge base. `bootstrap.py` calls `make_knowledge_base`.

settings.embedder:      auto (default) | minilm | minilm-int8 | hash | litellm:<model>
settings.vector_index:  auto (default) | chroma (persistent, under the workspace) | memory |
                        http(s)://host:port

`auto` is what a bare `pip install medloop` runs on: without the `knowledge` extra the
vectors live in memory (refilled from SQL, which holds every vector) and a new knowledge
base embeds with `hash:256`; with it, Chroma and MiniLM. An existing knowledge base keeps
the embedder it recorded (see `embedders.resolve_embedder`).
"""

from __future__ import annotations

import atexit
import weakref

from medloop.core.errors import MedloopError, SpecError
from medloop.core.extras import installed
from medloop.core.ids import new_id
from medloop.core.settings import Settings
from medloop.core.store import Store
from medloop.knowledge import lock
from medloop.knowledge.base import VectorIndex
from medloop.knowledge.embedders import make_embedder, resolve_embedder
from medloop.knowledge.graph import NetworkXGraph
from medloop.knowledge.service import KnowledgeService
from medloop.knowledge.vector import (
    ChromaVectorIndex,
    CorruptIndex,
    MemoryVectorIndex,
    chroma_client,
    corrupt,
    set_aside,
)


def knowledge_id(store: Store) -> str:
    """A random id per knowledge base, naming its Chroma collection (so two workspaces
    sharing one Chroma server never mix claims)."""
    kid = store.meta.get("kb_id")
    if kid is None:
        store.meta.set("kb_id", new_id("kb"))
        kid = store.meta.get("kb_id")
    assert kid is not None
    return kid


def make_knowledge_base(
    settings: Settings,
    store: Store,
    *,
    reconcile: bool = True,
    reembed: bool = False,
    repair: bool = False,
) -> KnowledgeService:
    """Build the knowledge base for these settings and bring its indexes in line with SQL.

    `reembed=True` opens it for `rebuild(reembed=True)` with a new embedder: the stored
    embedder is not checked and the vector collection starts empty. `repair=True` (for
    `rebuild`) moves a corrupt persistent index aside and starts an empty one; without it a
    corrupt index raises `CorruptIndex` (one line: run `medloop knowledge rebuild`)."""
    # `reembed`: a new embedder is chosen, so `auto` ignores the one recorded.
    recorded = None if reembed else store.meta.get("embedder")
    embedder = make_embedder(
        resolve_embedder(settings.embedder, recorded),
        api_base=settings.embedder_api_base,
        api_key=settings.embedder_api_key,
    )
    kdir = settings.workspace_dir / "knowledge"
    graph_path = kdir / "graph.json"
    owner = lock.try_acquire(kdir / "writer.lock")
    collection = f"medloop_{knowledge_id(store)}"
    target = settings.vector_target
    if target == "auto":
        target = "chroma" if installed("chromadb") else "memory"
    vectors: VectorIndex
    set_aside_to = None
    if target == "memory":
        vectors = MemoryVectorIndex(embedder.dim)
    elif target == "chroma":
        if owner:
            try:
                vectors = _local_chroma(settings, embedder.name, embedder.dim, collection, reset=reembed)
            except CorruptIndex:
                if not repair:
                    raise
                set_aside_to = set_aside(settings.chroma_dir)
                vectors = _local_chroma(settings, embedder.name, embedder.dim, collection, reset=reembed)
        else:
            # Another process writes Chroma; follow SQL into memory instead of opening it.
            vectors = MemoryVectorIndex(embedder.dim)
    elif target.startswith(("http://", "https://")):
        client = chroma_client(target)
        where = f"the Chroma collection {collection} at {target}"
        vectors = ChromaVectorIndex(
            client, embedder=embedder.name, dim=embedder.dim, name=collection, where=where, reset=reembed
        )
    else:
        raise SpecError(
            f"MEDLOOP_VECTOR_INDEX={target!r} is not a known vector index",
            hint="use auto, chroma, memory, or the http(s):// URL of a Chroma server",
        )
    graph = NetworkXGraph(graph_path, readonly=not owner)
    kb = KnowledgeService(
        store,
        embedder,
        vectors,
        graph,
        owner=owner,
        where=f"the knowledge base in {settings.workspace_dir}",
        check=not reembed,
    )
    kb.set_aside = set_aside_to
    if not owner:
        kb.writer_note = f"pid {lock.holder(kdir / 'writer.lock')} holds {kdir / 'writer.lock'}"
    if reconcile and not reembed:
        kb.reconcile()
    if owner:
        ref = weakref.ref(kb)

        def _save_graph() -> None:
            alive = ref()
            if alive is not None:
                alive.close()

        atexit.register(_save_graph)
    return kb


def _local_chroma(
    settings: Settings, embedder: str, dim: int, collection: str, *, reset: bool
) -> ChromaVectorIndex:
    """The workspace's persistent Chroma index; any failure to open it is `CorruptIndex`."""
    client = chroma_client(settings.chroma_dir)
    where = f"the Chroma index at {settings.chroma_dir}"
    try:
        return ChromaVectorIndex(
            client, embedder=embedder, dim=dim, name=collection, where=where, reset=reset
        )
    except MedloopError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged segment surfaces as several chromadb types
        raise corrupt(settings.chroma_dir, exc) from None
