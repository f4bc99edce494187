"""LangChain / LangGraph adapters: each registered tool as a langchain-core StructuredTool.

The tools publish the registry's JSON Schema (the same one the function-calling and MCP
adapters publish) and validate through the registry, so a bad call comes back to the
model as a tool message naming the field and what is allowed (`status="error"`), never
as an exception that ends the agent's run. Use them with `langgraph.prebuilt.ToolNode`
or `create_react_agent`.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import StructuredTool, ToolException

from medloop.core.errors import MedloopError
from medloop.tools.context import ToolContext
from medloop.tools.registry import Registry, ToolSpec, error_payload
from medloop.tools.schemas import description, input_schema

# Argument names StructuredTool keeps for itself (it injects the RunnableConfig and
# callbacks under them), so a tool input field with one of these names would vanish.
RESERVED = frozenset({"config", "callbacks", "run_manager"})


def langchain_tool(registry: Registry, spec: ToolSpec[Any, Any], ctx: ToolContext) -> StructuredTool:
    """One tool acting as `ctx.caller`; returns the output model as compact JSON text."""
    clash = RESERVED & set(spec.input_model.model_fields)
    if clash:
        raise ValueError(f"tool {spec.name}: input field(s) {sorted(clash)} are reserved by LangChain tools")

    def run(**arguments: Any) -> str:
        try:
            result = registry.call(spec.name, ctx, arguments)
        except MedloopError as exc:
            raise ToolException(json.dumps(error_payload(exc))) from None
        return result.model_dump_json()

    return StructuredTool.from_function(
        func=run,
        name=spec.name,
        description=description(spec),
        args_schema=input_schema(spec),
        handle_tool_error=True,
    )


def langchain_tools(
    registry: Registry, ctx: ToolContext, *, only: list[str] | None = None
) -> list[StructuredTool]:
    """Every tool of `registry` (or the `only` ones, in that order) for `ctx.caller`."""
    names = only if only is not None else registry.names()
    return [langchain_tool(registry, registry.get(name), ctx) for name in names]
