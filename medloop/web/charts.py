"""Plots made on the server as inline SVG (readable without JavaScript, in reports too),
each wrapped with its full data (`data-chart`, every point) that static/charts.js turns
into an interactive uPlot chart (zoom by dragging, values on hover) where scripts run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from medloop.web.schemas import Graph

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]
MAX_POINTS = 600  # per series drawn; longer series are thinned evenly (ends kept)


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    colour: str = ""
    step: bool = False  # draw as a step function (best-so-far)
    dots: bool = False  # draw markers only
    dashed: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = max((hi - lo) / max(1, n), 1.0 if integer else 0.0) or 1.0
    mag = 10 ** math.floor(math.log10(raw))
    # 2.5 * 10^k is not a whole step when k = 0 (ticks at 2.5, 7.5 on a trial axis)
    steps = (1, 2, 5, 10) if integer and mag < 10 else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks: list[float] = []
    v = start
    while v <= hi + 1e-12 * abs(hi) and len(ticks) < 50:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.4g}"


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    keep = [points[int(i * stride)] for i in range(MAX_POINTS)]
    return [*keep, points[-1]]


def thin_minmax(points: list[tuple[float, float]], buckets: int) -> list[tuple[float, float]]:
    """At most ~2 x `buckets` points that keep each bucket's lowest and highest value (in x
    order), so spikes survive; for overlays of many long curves."""
    if len(points) <= 2 * buckets:
        return points
    size = len(points) / buckets
    out: list[tuple[float, float]] = []
    for b in range(buckets):
        chunk = points[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        lo = min(chunk, key=lambda p: p[1])
        hi = max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


def line_chart(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 280,
    chart_id: str = "",
) -> str:
    """A line/step/scatter chart with axes, ticks and a legend."""
    pts = [p for s in series for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])]
    legend_h = 18 if len(series) > 1 else 0  # a row above the plot: never over the lines
    ml, mr, mt, mb = 58, 16, (28 if title else 12) + legend_h, 42
    pw, ph = width - ml - mr, height - mt - mb
    attrs = f'class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
    if chart_id:
        attrs += f' id="{escape(chart_id)}"'
    out = [f"<svg {attrs}>"]
    out.append(f"<title>{escape(title or y_label)}</title>")
    if title:
        out.append(f'<text x="{ml}" y="18" class="chart-title">{escape(title)}</text>')
    if not pts:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">no data yet</text>'
        )
        out.append("</svg>")
        return "".join(out)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.06 or abs(y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="chart-frame"/>')
    for t in _nice_ticks(y0, y1):
        y = sy(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>')
        out.append(
            f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" class="chart-tick">{_fmt(t)}</text>'
        )
    integer_x = all(float(p[0]).is_integer() for p in pts)
    for t in _nice_ticks(x0, x1, 6, integer=integer_x):
        x = sx(t)
        out.append(
            f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle" class="chart-tick">{_fmt(t)}</text>'
        )
    if x_label:
        out.append(
            f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle" class="chart-label">{escape(x_label)}</text>'
        )
    if y_label:
        out.append(
            f'<text x="14" y="{mt + ph / 2}" text-anchor="middle" class="chart-label" '
            f'transform="rotate(-90 14 {mt + ph / 2})">{escape(y_label)}</text>'
        )
    for i, s in enumerate(series):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        sp = _thin([p for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])])
        if not sp:
            continue
        name = escape(s.name)
        if s.dots:
            circles = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5"/>' for x, y in sp)
            out.append(
                f'<g class="series dots" data-series="{name}" fill="{colour}" fill-opacity="0.55">{circles}</g>'
            )
            continue
        coords: list[str] = []
        prev: tuple[float, float] | None = None
        for x, y in sp:
            if s.step and prev is not None:
                coords.append(f"{sx(x):.1f},{sy(prev[1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
            prev = (x, y)
        dash = ' stroke-dasharray="5,4"' if s.dashed else ""
        out.append(
            f'<polyline class="series line" data-series="{name}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash} points="{" ".join(coords)}"/>'
        )
    lx, y = ml, mt - 8
    for i, s in enumerate(series if legend_h else []):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        out.append(f'<rect x="{lx}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="{y + 1}" class="chart-legend">{escape(s.name)}</text>')
        lx += 14 + 7 * len(s.name) + 16  # ~7 px per character at the legend's font size
    out.append("</svg>")
    return "".join(out)


def chart_data(
    series: Sequence[Series], *, title: str, x_label: str, y_label: str, integer_x: bool | None = None
) -> dict[str, object]:
    """Every point of every series on one shared x axis (uPlot's aligned columns; a series
    without a value at some x has null there)."""
    clean = [[(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)] for s in series]
    xs = sorted({x for pts in clean for x, _ in pts})
    where = {x: i for i, x in enumerate(xs)}
    columns: list[list[float | None]] = []
    for pts in clean:
        col: list[float | None] = [None] * len(xs)
        for x, y in pts:
            col[where[x]] = y
        columns.append(col)
    if integer_x is None:
        integer_x = all(float(x).is_integer() for x in xs)
    return {
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "integer_x": integer_x,
        "x": xs,
        "series": [
            {
                "name": s.name,
                "colour": s.colour or COLOURS[i % len(COLOURS)],
                "step": s.step,
                "dots": s.dots,
                "dashed": s.dashed,
                "y": col,
            }
            for i, (s, col) in enumerate(zip(series, columns, strict=True))
        ],
    }


def interactive_chart(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 280,
    chart_id: str = "",
) -> str:
    """The SVG chart inside a wrapper that carries all of its data for charts.js."""
    svg = line_chart(
        series, title=title, x_label=x_label, y_label=y_label, width=width, height=height, chart_id=chart_id
    )
    data = chart_data(series, title=title, x_label=x_label, y_label=y_label)
    payload = escape(json.dumps(data, separators=(",", ":"), allow_nan=False), quote=True)
    wrap_id = f' id="{escape(chart_id)}-i"' if chart_id else ""
    return f'<div class="ichart"{wrap_id} data-height="{height}" data-chart="{payload}">{svg}</div>'


TIER_COLOURS = {
    "validated": "#1a7f37",
    "reproduced": "#2da44e",
    "supported": "#0969da",
    "refuted": "#8250df",
    "inconclusive": "#bf8700",
    "external": "#54aeff",
    "quarantined": "#cf222e",
    "rejected": "#a40e26",
    "superseded": "#8c959f",
    "proposed": "#8c959f",
}
KIND_COLOURS = {
    "trial": "#6e7781",
    "dataset": "#953800",
    "campaign": "#0550ae",
    "hypothesis": "#116329",
    "source": "#cf222e",
    "metric": "#8250df",
}

EDGE_FONT = 9.0  # px, as .kgraph .edge-label in app.css
# Where along an edge its label may sit (fraction from src), best first: the middle, then
# towards the outer end, where edges fanning out of the centre are furthest apart.
_SPOTS = (0.5, 0.62, 0.38, 0.72, 0.28, 0.8, 0.2)


def _box(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)


def _label_spot(
    text: str, a: tuple[float, float], b: tuple[float, float], taken: list[tuple[float, float, float, float]]
) -> tuple[float, float] | None:
    """The first point along the edge a->b where a label of `text` overlaps no node and no
    label placed before (its box is reserved in `taken`); None when none fits (the edge's
    tooltip still names it)."""
    w, h = len(text) * EDGE_FONT * 0.62 + 4, EDGE_FONT + 3
    for t in _SPOTS:
        x, y = a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        box = _box(x, y, w, h)
        if not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in taken):
            taken.append(box)
            return (x, y)
    return None


def graph_svg(graph: Graph, *, width: int = 760, height: int = 520) -> str:
    """The neighbourhood of a claim: the centre in the middle, direct neighbours on an
    inner ring, their neighbours on an outer ring; edges labelled by kind."""
    cx, cy = width / 2, height / 2
    adjacency: dict[str, set[str]] = {}
    for e in graph.edges:
        adjacency.setdefault(e.src, set()).add(e.dst)
        adjacency.setdefault(e.dst, set()).add(e.src)
    ring1 = sorted(adjacency.get(graph.center, set()) - {graph.center})
    ring2 = sorted({n.id for n in graph.nodes} - set(ring1) - {graph.center})
    pos: dict[str, tuple[float, float]] = {graph.center: (cx, cy)}
    inner = 0.5 if ring2 else 0.8  # one ring only: use the room
    for ring, radius in ((ring1, min(cx, cy) * inner), (ring2, min(cx, cy) * 0.88)):
        for i, node in enumerate(ring):
            angle = 2 * math.pi * i / max(1, len(ring)) - math.pi / 2 + (0.3 if ring is ring2 else 0)
            pos[node] = (cx + radius * math.cos(angle), cy + radius * math.sin(angle))
    out = [
        f'<svg class="kgraph" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>knowledge graph around {escape(graph.center)}</title>'
    ]
    labelled = len(graph.edges) <= 24  # beyond that the labels only add clutter; colours tell the kind
    # room already used: the nodes and their labels (which point away from the centre)
    taken = []
    for n in graph.nodes:
        if n.id in pos:
            (x, y), r = pos[n.id], 13 if n.id == graph.center else 8
            taken.append(_box(x, y, 2 * r, 2 * r))
            w = min(len(n.label), 26) * 10.5 * 0.58
            taken.append(_box(x - r - 3 - w / 2 if x < cx - 1 else x + r + 3 + w / 2, y, w, 12))
    labels = []
    for e in graph.edges:
        if e.src not in pos or e.dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[e.src], pos[e.dst]
        cls = "edge edge-" + escape(e.kind)
        # every edge names its kind on hover; the visible label is placed where it fits
        out.append(
            f'<line class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}">'
            f"<title>{escape(e.kind)}: {escape(e.src)} → {escape(e.dst)}</title></line>"
        )
        spot = _label_spot(e.kind, (x1, y1), (x2, y2), taken) if labelled else None
        if spot is not None:
            labels.append(
                f'<text class="edge-label" x="{spot[0]:.1f}" y="{spot[1] + EDGE_FONT * 0.35:.1f}" '
                f'text-anchor="middle" data-src="{escape(e.src)}" data-dst="{escape(e.dst)}">{escape(e.kind)}</text>'
            )
    out.extend(labels)  # above the edges, so no line crosses a label
    for n in graph.nodes:
        if n.id not in pos:
            continue
        x, y = pos[n.id]
        colour = TIER_COLOURS.get(n.tier or "", KIND_COLOURS.get(n.kind, "#57606a"))
        r = 13 if n.id == graph.center else 8
        label = escape(n.label if len(n.label) <= 26 else n.label[:25] + "…")  # full text in the tooltip
        href = f"/claims/{escape(n.id)}" if n.kind == "claim" else ""
        node = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}"><title>{escape(n.kind)} {escape(n.id)}'
            f"{' (' + escape(n.tier) + ')' if n.tier else ''}: {escape(n.label)}</title></circle>"
            + (  # labels point away from the centre
                f'<text class="node-label" x="{x - r - 3:.1f}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
                if x < cx - 1
                else f'<text class="node-label" x="{x + r + 3:.1f}" y="{y + 4:.1f}">{label}</text>'
            )
        )
        if href:
            node = f'<a href="{href}" class="node-link">{node}</a>'
        out.append(f'<g class="node node-{escape(n.kind)}" data-id="{escape(n.id)}">{node}</g>')
    out.append("</svg>")
    return "".join(out)
