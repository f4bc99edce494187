"""The research session the acceptance tests drive (over MCP and through LangGraph):
check the dataset, run a trial, wait for it, read its result, search the knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from tests.unit.tools.scripted_chat import Policy, call, last_tool


def research_policy(dataset: Path, config: dict[str, Any], *, seed: int, wait_s: float = 60) -> Policy:
    """A deterministic 'LLM': each step reads the previous tool's output, like a model would."""
    state: dict[str, Any] = {"n": 0}

    def next_message(messages: list[BaseMessage]) -> AIMessage:
        state["n"] += 1
        n = state["n"]
        name, out, status = last_tool(messages)
        if not name:
            return call("dataset_check", {"path": str(dataset)}, n)
        if status == "error" and name == "run_trial" and not state.get("retried"):
            state["retried"] = True  # the first run_trial had a typo; fix it as the error says
            return call(
                "run_trial", {"dataset_path": str(dataset), "trial_config": config, "seeds": [seed]}, n
            )
        if name == "dataset_check":
            assert out is not None and out["ok"], out
            # a typo first ("seed" for "seeds"), as models make: the error says what to fix
            return call("run_trial", {"dataset_path": str(dataset), "trial_config": config, "seed": seed}, n)
        if name == "run_trial":
            assert out is not None
            state["handle"] = out["trials"][0]["handle"]
            return call("trial_status", {"handles": [state["handle"]], "wait_s": wait_s}, n)
        if name == "trial_status":
            assert out is not None
            if not out["all_done"]:
                return call("trial_status", {"handles": [state["handle"]], "wait_s": wait_s}, n)
            return call("trial_result", {"handle": state["handle"]}, n)
        if name == "trial_result":
            assert out is not None
            state["objective"] = out["objective"]
            return call("search_knowledge", {"query": "what improves Dice on small abdominal data"}, n)
        if name == "search_knowledge":
            return AIMessage(content=f"Trial {state['handle']} reached Dice {state['objective']:.3f}.")
        raise AssertionError(f"unexpected tool {name}")

    return next_message
