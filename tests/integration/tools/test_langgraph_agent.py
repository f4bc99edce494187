"""Acceptance: a LangGraph ReAct agent driven by a scripted model runs the same research
session as the MCP test through the LangChain adapters and medloop's public API only,
with a real sandboxed trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langgraph.prebuilt import create_react_agent

from medloop import bootstrap
from medloop.core.settings import Settings
from medloop.tools.adapters_langchain import langchain_tools
from medloop.tools.catalog import default_registry
from medloop.tools.context import Caller
from tests.unit.tools.helpers import TINY
from tests.unit.tools.research_script import research_policy
from tests.unit.tools.scripted_chat import ScriptedChatModel

pytestmark = pytest.mark.slow


def test_react_agent_trains_for_real_through_the_langchain_tools(
    phantom: Path, server_env: dict[str, str], workspace: Path
) -> None:
    ctx = bootstrap.tool_context(Settings(), Caller("graph-agent"))
    registry = default_registry()
    model = ScriptedChatModel(policy=research_policy(phantom, TINY, seed=3))
    agent = create_react_agent(model, langchain_tools(registry, ctx))
    final = agent.invoke(
        {"messages": [HumanMessage("Check the phantom, train a tiny UNet once and report its Dice.")]},
        {"recursion_limit": 40},
    )
    tools = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    names = [m.name for m in tools]
    assert names[:3] == ["dataset_check", "run_trial", "run_trial"] and names[-2:] == [
        "trial_result",
        "search_knowledge",
    ]
    assert set(names[3:-2]) == {"trial_status"}
    result = json.loads(str(tools[-2].content))
    assert result["status"] == "succeeded", result
    assert result["seed"] == 3 and result["config"]["iterations"] == TINY["iterations"]
    assert result["provenance"]["exit_code"] == 0
    trial = ctx.store.trials.get(result["handle"])
    assert trial.result is not None and trial.result.objective == result["objective"]
    assert final["messages"][-1].content.startswith(f"Trial {result['handle']} reached Dice")
