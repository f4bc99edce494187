"""The campaign as a LangGraph state graph with a SQLite checkpointer.

Edges:
    retrieve -> screen -> propose -> design -> execute -> evaluate -> analyze -> record
    record -> design (reproduction phase, when a claim is supported) | review
    review -> reflect -> retrieve (next cycle) | finalize -> END
A node re-runs from its start after a crash; nodes are idempotent (see nodes.py).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from medloop.agents.nodes import CampaignNodes
from medloop.agents.state import CampaignState

NODE_ORDER = (
    "retrieve",
    "screen",
    "propose",
    "design",
    "execute",
    "evaluate",
    "analyze",
    "record",
    "review",
    "reflect",
    "finalize",
)

# Node runs one cycle may take: every node of NODE_ORDER but finalize, plus a second
# design -> execute -> evaluate -> analyze -> record pass for the reproduction phase.
STEPS_PER_CYCLE = len(NODE_ORDER) - 1 + 5


def recursion_limit(max_cycles: int) -> int:
    """LangGraph's step limit for one run of the graph: every cycle the budget allows, the
    final node and some slack (a fixed limit ended long campaigns with GraphRecursionError)."""
    return STEPS_PER_CYCLE * (max_cycles + 1) + 25


def _after_propose(state: CampaignState) -> str:
    return "design" if state.get("hypothesis_ids") else "reflect"


def _after_record(state: CampaignState) -> str:
    return "design" if state.get("phase") == "reproduce" and state.get("reproduce_ids") else "review"


def _after_reflect(state: CampaignState) -> str:
    return "finalize" if state.get("stop_reason") else "retrieve"


def build_graph(nodes: CampaignNodes, checkpointer: Any) -> Any:
    graph = StateGraph(CampaignState)
    for name in NODE_ORDER:
        graph.add_node(name, nodes.wrap(name, getattr(nodes, name)))  # type: ignore[call-overload]
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "screen")
    graph.add_edge("screen", "propose")
    graph.add_conditional_edges("propose", _after_propose, ["design", "reflect"])
    for a, b in (
        ("design", "execute"),
        ("execute", "evaluate"),
        ("evaluate", "analyze"),
        ("analyze", "record"),
        ("review", "reflect"),
        ("finalize", END),
    ):
        graph.add_edge(a, b)
    graph.add_conditional_edges("record", _after_record, ["design", "review"])
    graph.add_conditional_edges("reflect", _after_reflect, ["finalize", "retrieve"])
    return graph.compile(checkpointer=checkpointer)
