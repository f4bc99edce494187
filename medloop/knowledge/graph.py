"""The knowledge graph index: a networkx DiGraph persisted as node-link JSON (no pickle).

The truth is the `kb_edges` table; this file is a cache that also records the last edge
seq it holds (`watermark`), so a process catches up by reading only newer edges.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from medloop.core.errors import StoreError

FORMAT = "medloop-graph/1"


class NetworkXGraph:
    """Directed graph; nodes carry `kind`, edges carry `kind` (one edge per src, dst)."""

    def __init__(self, path: Path | None = None, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.g: nx.DiGraph = nx.DiGraph()
        self.watermark = 0
        if path is not None and path.is_file():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            self.g = nx.node_link_graph(data["graph"], directed=True, multigraph=False, edges="edges")
            self.watermark = int(data["watermark"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A cache we cannot read is rebuilt from SQL, not trusted half-way.
            self.g, self.watermark = nx.DiGraph(), 0
            self.load_error = f"{path}: {exc}"

    def upsert_node(self, node_id: str, kind: str, **attrs: Any) -> None:
        self.g.add_node(node_id, kind=kind, **attrs)

    def upsert_edge(self, src: str, dst: str, kind: str, **attrs: Any) -> None:
        self.g.add_edge(src, dst, kind=kind, **attrs)

    def neighbors(
        self, node_id: str, *, kinds: Sequence[str] | None = None, direction: str = "both"
    ) -> list[tuple[str, str]]:
        if node_id not in self.g:
            return []
        out: list[tuple[str, str]] = []
        if direction in ("out", "both"):
            out += [(dst, d["kind"]) for _, dst, d in self.g.out_edges(node_id, data=True)]
        if direction in ("in", "both"):
            out += [(src, d["kind"]) for src, _, d in self.g.in_edges(node_id, data=True)]
        if kinds is not None:
            out = [pair for pair in out if pair[1] in kinds]
        return sorted(out)

    def descendants(
        self, node_id: str, *, kinds: Sequence[str] | None = None, direction: str = "out"
    ) -> set[str]:
        if node_id not in self.g:
            return set()
        seen: set[str] = set()
        queue = deque([node_id])
        while queue:
            node = queue.popleft()
            edges = (
                self.g.out_edges(node, data="kind")
                if direction == "out"
                else self.g.in_edges(node, data="kind")
            )
            for src, dst, kind in edges:
                nxt = dst if direction == "out" else src
                if (kinds is None or kind in kinds) and nxt not in seen and nxt != node_id:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    def nodes(self, kind: str | None = None) -> set[str]:
        if kind is None:
            return set(self.g.nodes)
        return {n for n, k in self.g.nodes(data="kind") if k == kind}

    def kind_of(self, node_id: str) -> str | None:
        return self.g.nodes[node_id].get("kind") if node_id in self.g else None

    def remove_node(self, node_id: str) -> None:
        if node_id in self.g:
            self.g.remove_node(node_id)

    def clear(self) -> None:
        self.g = nx.DiGraph()
        self.watermark = 0

    def save(self) -> None:
        """Write graph + watermark to a temp file, then rename: never a half-written file."""
        if self.path is None or self.readonly:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".graph-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                self._write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"cannot write the knowledge graph to {self.path}: {exc}") from None

    def _write(self, fh: Any) -> None:
        """The node-link JSON of `nx.node_link_data(g, edges="edges")` (what `_load` reads),
        written a node and an edge at a time: at 100k claims the whole node-link copy was a
        few hundred MB on top of the graph itself."""
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        fh.write(f'{{"format":{dumps(FORMAT)},"watermark":{int(self.watermark)},"graph":')
        fh.write(f'{{"directed":true,"multigraph":false,"graph":{dumps(self.g.graph)},"nodes":[')
        for i, (node, attrs) in enumerate(self.g.nodes(data=True)):
            fh.write(("," if i else "") + dumps({**attrs, "id": node}))
        fh.write('],"edges":[')
        for i, (src, dst, attrs) in enumerate(self.g.edges(data=True)):
            fh.write(("," if i else "") + dumps({**attrs, "source": src, "target": dst}))
        fh.write("]}}")
