"""A LangGraph ReAct agent driven by a scripted model uses medloop's tools through the
public API (bootstrap.tool_context, default_registry, langchain_tools)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langgraph.prebuilt import create_react_agent

from medloop.tools.adapters_langchain import langchain_tools
from medloop.tools.context import ToolContext
from medloop.tools.registry import Registry
from tests.unit.tools.research_script import research_policy
from tests.unit.tools.scripted_chat import ScriptedChatModel


def test_react_agent_runs_the_research_session_on_replayed_trials(
    registry: Registry, ctx: ToolContext, phantom: Path
) -> None:
    # `ctx` answers trials from a replay table: the agent, adapters and tools are real.
    model = ScriptedChatModel(policy=research_policy(phantom, {"loss": "dice", "lr": 0.001}, seed=1))
    agent = create_react_agent(model, langchain_tools(registry, ctx))
    final = agent.invoke(
        {"messages": [HumanMessage("Train once and tell me the Dice.")]}, {"recursion_limit": 40}
    )
    assert [t["function"]["name"] for t in model.bound_tools] == registry.names()
    bound = {t["function"]["name"]: t["function"]["parameters"] for t in model.bound_tools}
    assert bound["run_trial"]["properties"]["seeds"]["type"] == "array"
    tool_msgs = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_msgs] == [
        "dataset_check",
        "run_trial",
        "run_trial",
        "trial_status",
        "trial_result",
        "search_knowledge",
    ]
    typo = tool_msgs[1]
    assert typo.status == "error"
    error = json.loads(str(typo.content))
    assert error["error"] == "ToolInputError"
    assert {"field": "seed", "problem": error["fields"][0]["problem"]} == error["fields"][0]
    assert "allowed fields:" in error["fields"][0]["problem"] and "seeds" in error["fields"][0]["problem"]
    result = json.loads(str(tool_msgs[4].content))
    assert result["status"] == "succeeded" and result["seed"] == 1
    assert result["config"]["loss"] == "dice"  # not the default: the arguments reached the tool
    assert (
        final["messages"][-1].content == f"Trial {result['handle']} reached Dice {result['objective']:.3f}."
    )


def test_reserved_langchain_argument_names_are_refused(registry: Registry, ctx: ToolContext) -> None:
    from pydantic import Field

    from medloop.tools.adapters_langchain import langchain_tool
    from medloop.tools.registry import ToolModel, ToolSpec

    class Clashing(ToolModel):
        config: dict[str, int] = Field(default_factory=dict)

    spec = ToolSpec(
        name="clash",
        version=1,
        fn=lambda c, a: a,
        input_model=Clashing,
        output_model=Clashing,
        roles=("agent",),
        read_only=True,
    )
    with pytest.raises(ValueError, match="reserved by LangChain"):
        langchain_tool(registry, spec, ctx)
