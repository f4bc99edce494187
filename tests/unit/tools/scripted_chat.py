"""A scripted chat model for LangGraph agents in tests: a policy function looks at the
conversation so far and returns the next AI message (tool calls or a final answer).
Tools bound with `bind_tools` are recorded as OpenAI tool schemas."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

Policy = Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(BaseChatModel):
    policy: Policy
    _bound: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _turns: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def bound_tools(self) -> list[dict[str, Any]]:
        return self._bound

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self._bound = [convert_to_openai_tool(t) for t in tools]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._turns += 1
        if self._turns > 40:
            raise RuntimeError("the scripted agent is looping")
        return ChatResult(generations=[ChatGeneration(message=self.policy(messages))])


def call(name: str, arguments: dict[str, Any], n: int) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": arguments, "id": f"call_{n}", "type": "tool_call"}]
    )


def last_tool(messages: list[BaseMessage]) -> tuple[str, dict[str, Any] | None, str]:
    """(tool name, parsed JSON output or None, status) of the latest tool message."""
    for msg in reversed(messages):
        if isinstance(msg, ToolMessage):
            text = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            return str(msg.name), data, msg.status
    return "", None, "success"
