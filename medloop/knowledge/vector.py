"""Vector indexes over claim statements: in-memory numpy, and Chroma (persistent or server).
Chroma comes with the `knowledge` extra; without it the in-memory index serves (exact
cosine search, refilled from SQL when a process opens the knowledge base).

Both are indexes, never the truth: the statement vectors also live in SQL (`kb_vectors`),
and `KnowledgeService.reconcile/rebuild` refill an index from there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from medloop.core.errors import MedloopError, StoreError
from medloop.core.extras import require
from medloop.knowledge.base import Vector

COLLECTION = "medloop_claims"


class EmbedderMismatch(MedloopError):
    """An index was built with another embedder than the one configured."""

    exit_code = 2


def mismatch(where: str, stored: str, stored_dim: int, name: str, dim: int) -> EmbedderMismatch:
    return EmbedderMismatch(
        f"{where} was indexed with embedder {stored!r} (dim {stored_dim}) but MEDLOOP_EMBEDDER "
        f"gives {name!r} (dim {dim})",
        hint=f"set MEDLOOP_EMBEDDER={stored}, or re-embed with `medloop knowledge rebuild --reembed`",
    )


class CorruptIndex(StoreError):
    """The persistent vector index cannot be opened (a damaged or foreign chroma.sqlite3).
    SQL holds every vector: `medloop knowledge rebuild` moves the index aside and rebuilds it."""


def corrupt(path: Path, exc: BaseException) -> CorruptIndex:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CorruptIndex(
        f"vector index is corrupt: run `medloop knowledge rebuild` ({path}: {first})",
        hint="rebuild keeps the damaged index, renamed, and rebuilds it from SQL",
    )


def _value_key(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


class MemoryVectorIndex:
    """Exact cosine search over a (N, dim) float32 matrix; postings make filters cheap."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._meta: list[dict[str, Any]] = []
        self._vec = np.zeros((1024, dim), dtype=np.float32)
        # (field, value) -> bool mask over rows; list-valued fields post every element.
        self._post: dict[tuple[str, str], np.ndarray[Any, np.dtype[np.bool_]]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def _grow(self, need: int) -> None:
        cap = self._vec.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        vec = np.zeros((new_cap, self.dim), dtype=np.float32)
        vec[:cap] = self._vec
        self._vec = vec
        for key, mask in self._post.items():
            grown = np.zeros(new_cap, dtype=bool)
            grown[:cap] = mask
            self._post[key] = grown

    def _postings(self, meta: dict[str, Any]) -> list[tuple[str, str]]:
        keys = []
        for field, value in meta.items():
            values = value if isinstance(value, list) else [value]
            keys += [(field, _value_key(v)) for v in values]
        return keys

    def _set_meta(self, row: int, meta: dict[str, Any], on: bool) -> None:
        for key in self._postings(meta):
            mask = self._post.get(key)
            if mask is None:
                mask = self._post[key] = np.zeros(self._vec.shape[0], dtype=bool)
            mask[row] = on

    def upsert(self, ids: Sequence[str], vectors: Vector, metadatas: Sequence[dict[str, Any]]) -> None:
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"vectors of shape {vectors.shape} for {len(ids)} ids of dim {self.dim}")
        for cid, vec, meta in zip(ids, vectors, metadatas, strict=True):
            row = self._row.get(cid)
            if row is None:
                row = len(self._ids)
                self._grow(row + 1)
                self._ids.append(cid)
                self._meta.append({})
                self._row[cid] = row
            self._set_meta(row, self._meta[row], False)
            self._vec[row] = vec
            self._meta[row] = dict(meta)
            self._set_meta(row, self._meta[row], True)

    def _mask(self, where: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        n = self._vec.shape[0]
        out = np.ones(n, dtype=bool)
        for field, cond in where.items():
            if field in ("$and", "$or"):
                parts = [self._mask(c) for c in cond]
                part = np.logical_and.reduce(parts) if field == "$and" else np.logical_or.reduce(parts)
            elif isinstance(cond, dict) and set(cond) <= {"$in", "$contains", "$eq"}:
                values = cond.get("$in", [cond.get("$contains", cond.get("$eq"))])
                part = np.zeros(n, dtype=bool)
                for value in values:
                    hit = self._post.get((field, _value_key(value)))
                    if hit is not None:
                        part |= hit
            elif isinstance(cond, dict):
                raise ValueError(f"filter operator(s) {sorted(cond)} on {field!r} are not supported")
            else:
                hit = self._post.get((field, _value_key(cond)))
                part = hit if hit is not None else np.zeros(n, dtype=bool)
            out &= part
        return out

    def query(
        self, vector: Vector, *, k: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        n = len(self._ids)
        if n == 0 or k <= 0:
            return []
        sims = self._vec[:n] @ vector.reshape(-1).astype(np.float32)  # (N,) cosine, rows are unit
        if where:
            mask = self._mask(where)[:n]
            candidates = np.flatnonzero(mask)
            if candidates.size == 0:
                return []
        else:
            candidates = np.arange(n)
        cand_sims = sims[candidates]
        top = np.argpartition(-cand_sims, k - 1)[:k] if candidates.size > k else np.arange(candidates.size)
        # Best first; equal similarities fall back to insertion order (deterministic).
        order = top[np.lexsort((candidates[top], -cand_sims[top]))]
        return [(self._ids[int(candidates[i])], float(cand_sims[i])) for i in order]

    def delete(self, ids: Sequence[str]) -> None:
        for cid in ids:
            row = self._row.pop(cid, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            self._set_meta(row, self._meta[row], False)
            if row != last:
                moved = self._ids[last]
                self._set_meta(last, self._meta[last], False)
                self._ids[row], self._meta[row] = moved, self._meta[last]
                self._vec[row] = self._vec[last]
                self._row[moved] = row
                self._set_meta(row, self._meta[row], True)
            self._ids.pop()
            self._meta.pop()

    def ids(self) -> set[str]:
        return set(self._ids)

    def clear(self) -> None:
        self.__init__(self.dim)  # type: ignore[misc]

    def vectors(self) -> tuple[list[str], Vector]:
        """(ids, (N, dim) matrix) in row order, for benchmarks and exports."""
        return list(self._ids), self._vec[: len(self._ids)].copy()


def chroma_client(target: Path | str) -> Any:
    """A PersistentClient for a folder, or an HttpClient for `http(s)://host:port`."""
    chromadb = require("chromadb", "the Chroma vector index", instead="MEDLOOP_VECTOR_INDEX=memory")
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        url = urlparse(target)
        try:
            return chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        except Exception as exc:  # noqa: BLE001 - chromadb wraps transport errors in several types
            raise StoreError(f"cannot reach the Chroma server at {target}: {exc}") from None
    path = Path(target)
    path.mkdir(parents=True, exist_ok=True)
    try:
        client = chromadb.PersistentClient(path=str(path), settings=settings)
        client.list_collections()  # reads the database: a damaged one fails here, not later
    except Exception as exc:  # noqa: BLE001 - chromadb raises several types for a bad file
        _forget_client(path)
        raise corrupt(path, exc) from None
    return client


def _forget_client(path: Path) -> None:
    """Drop chromadb's per-process cache entry for this folder: a client that failed to
    start stays cached, and would fail again even after the folder is replaced."""
    if "chromadb" not in sys.modules:
        return  # no client was ever made in this process
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)


def set_aside(path: Path) -> Path:
    """Move a corrupt index folder aside (kept for inspection), timestamped; returns where."""
    from datetime import UTC, datetime

    _forget_client(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(aside)
    return aside


class ChromaVectorIndex:
    """A Chroma collection in cosine space. We always pass embeddings: the collection has
    no embedding function, so Chroma never loads (or downloads) its default model."""

    def __init__(
        self,
        client: Any,
        *,
        embedder: str,
        dim: int,
        name: str = COLLECTION,
        where: str = "",
        reset: bool = False,
    ) -> None:
        """`reset` drops an existing collection first (re-embedding with another model)."""
        self.client = client
        self.name = name
        self.embedder = embedder
        self.dim = dim
        self.where = where or f"Chroma collection {name!r}"
        self._batch = int(client.get_max_batch_size())
        if reset and name in {c.name for c in client.list_collections()}:
            client.delete_collection(name)
        self._col = self._open()

    def _open(self) -> Any:
        col = self.client.get_or_create_collection(
            self.name,
            # search ef 200 (default 100): higher recall at 100k claims for ~1 ms per query;
            # construction ef stays at 100, since it prices every insert.
            configuration={"hnsw": {"space": "cosine", "ef_search": 200}},
            metadata={"embedder": self.embedder, "dim": self.dim},
            embedding_function=None,
        )
        meta = col.metadata or {}
        stored, stored_dim = meta.get("embedder"), meta.get("dim")
        if stored != self.embedder or stored_dim != self.dim:
            raise mismatch(self.where, str(stored), int(stored_dim or 0), self.embedder, self.dim)
        return col

    def upsert(self, ids: Sequence[str], vectors: Vector, metadatas: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(ids), self._batch):
            end = start + self._batch
            self._col.upsert(
                ids=list(ids[start:end]),
                embeddings=np.asarray(vectors[start:end], dtype=np.float32),
                metadatas=[dict(m) for m in metadatas[start:end]],
            )

    def query(
        self, vector: Vector, *, k: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        if k <= 0:
            return []
        result = self._col.query(
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=k,
            where=where or None,
            include=["distances"],
        )
        ids, dists = result["ids"][0], result["distances"][0]
        # cosine space: distance = 1 - cosine similarity
        return [(cid, 1.0 - float(d)) for cid, d in zip(ids, dists, strict=True)]  # best first

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self._batch):
            self._col.delete(ids=list(ids[start : start + self._batch]))

    def ids(self) -> set[str]:
        out: set[str] = set()
        offset, page = 0, 20_000
        while True:
            got = self._col.get(include=[], limit=page, offset=offset)["ids"]
            out.update(got)
            if len(got) < page:
                return out
            offset += page

    def clear(self) -> None:
        self.client.delete_collection(self.name)
        self._col = self._open()
