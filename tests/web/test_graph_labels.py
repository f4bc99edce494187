"""Knowledge-graph edge labels sit on their own edge and do not pile up: a claim with a dozen
neighbours used to print every kind at the midpoint of its spoke, all on one small circle
around the centre, on top of each other. Checked on the SVG and, as laid out by a real
Chromium, on the rendered text boxes."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from medloop.web import charts
from medloop.web.schemas import Graph, GraphEdge, GraphNode
from tests.conftest import require

CSS = Path(charts.__file__).resolve().parent / "static" / "app.css"
KINDS = ["supports", "contradicts", "derived_from", "reproduces", "measured_on", "cites"]


def dense_graph() -> Graph:
    """A claim with 12 direct neighbours (each edge labelled) and a few second-ring nodes."""
    nodes = [GraphNode(id="c0", kind="claim", label="centre claim", tier="reproduced")]
    edges = []
    for i in range(1, 13):
        nodes.append(GraphNode(id=f"c{i}", kind="claim", label=f"neighbour {i}", tier="supported"))
        edges.append(GraphEdge(src="c0", dst=f"c{i}", kind=KINDS[i % len(KINDS)]))
    for i in range(13, 17):
        nodes.append(GraphNode(id=f"t{i}", kind="trial", label=f"trial {i}"))
        edges.append(GraphEdge(src=f"c{i - 12}", dst=f"t{i}", kind="measured_on"))
    return Graph(center="c0", nodes=nodes, edges=edges, truncated=False)


def _segment_distance(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def _lines(svg: str) -> list[tuple[float, float, float, float]]:
    return [
        tuple(float(v) for v in m)  # type: ignore[misc]
        for m in re.findall(r'<line [^>]*x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"', svg)
    ]


def test_edge_labels_spread_along_their_edges() -> None:
    graph = dense_graph()
    svg = charts.graph_svg(graph)
    lines = _lines(svg)
    labels = re.findall(r'<text class="edge-label" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]+)</text>', svg)
    assert len(lines) == len(graph.edges)
    assert len(labels) >= 12, labels  # most fit; the rest are named in the edge's tooltip
    assert svg.count("<title>") >= len(graph.edges) + len(graph.nodes)
    positions = [(float(x), float(y)) for x, y, _ in labels]
    assert len({(round(x), round(y)) for x, y in positions}) == len(positions)
    # each label lies on one of the edges (its anchor is on the segment; y is nudged by the baseline)
    for x, y in positions:
        nearest = min(_segment_distance((x, y - 3.15), (s[0], s[1]), (s[2], s[3])) for s in lines)
        assert nearest < 1.0, (x, y)
    # estimated boxes (as the layout reserves them) do not overlap
    boxes = [
        charts._box(x, y - 3.15, len(t) * 9 * 0.62 + 4, 12)
        for (x, y), (_, _, t) in zip(positions, labels, strict=True)
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_edge_labels_in_chromium_do_not_overlap_and_sit_on_their_edge() -> None:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    require("browser", path is not None, "chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("browser", False, "the playwright package is not installed")
        return
    from tests.web.test_browser import CHROMIUM_FLAGS

    svg = charts.graph_svg(dense_graph())
    html = f"<html><head><style>{CSS.read_text()}</style></head><body><div class='card'>{svg}</div></body></html>"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.set_content(html)
            found = page.evaluate(
                """() => {
                  const svg = document.querySelector('svg.kgraph');
                  const lines = [...svg.querySelectorAll('line.edge')].map(l => ({
                    src: l.querySelector('title').textContent,
                    a: [l.x1.baseVal.value, l.y1.baseVal.value], b: [l.x2.baseVal.value, l.y2.baseVal.value]}));
                  const labels = [...svg.querySelectorAll('text.edge-label')].map(t => {
                    const b = t.getBBox();
                    return {src: t.dataset.src, dst: t.dataset.dst, x: b.x, y: b.y, w: b.width, h: b.height};
                  });
                  return {lines, labels};
                }"""
            )
        finally:
            browser.close()
    labels, lines = found["labels"], found["lines"]
    assert len(labels) >= 12
    # rendered boxes (the font Chromium really uses) do not overlap each other
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            overlap_w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            overlap_h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap_w <= 1 or overlap_h <= 1, (a, b)
    # and each label's centre lies on its own edge
    for lab in labels:
        centre = (lab["x"] + lab["w"] / 2, lab["y"] + lab["h"] / 2)
        own = next(ln for ln in lines if ln["src"].endswith(f"{lab['src']} → {lab['dst']}"))
        assert _segment_distance(centre, tuple(own["a"]), tuple(own["b"])) < lab["h"], (lab, own)


@pytest.mark.parametrize("n_edges", [1, 3])
def test_sparse_graph_labels_at_midpoint(n_edges: int) -> None:
    graph = Graph(
        center="c0",
        nodes=[GraphNode(id="c0", kind="claim", label="c", tier="supported")]
        + [GraphNode(id=f"n{i}", kind="trial", label=f"t{i}") for i in range(n_edges)],
        edges=[GraphEdge(src="c0", dst=f"n{i}", kind="measured_on") for i in range(n_edges)],
        truncated=False,
    )
    svg = charts.graph_svg(graph)
    lines = _lines(svg)
    labels = re.findall(r'<text class="edge-label" x="([\d.]+)" y="([\d.]+)"', svg)
    assert len(labels) == n_edges
    for (x, y), (x1, y1, x2, y2) in zip(labels, lines, strict=True):
        assert abs(float(x) - (x1 + x2) / 2) < 0.2 and abs(float(y) - 3.15 - (y1 + y2) / 2) < 0.2
