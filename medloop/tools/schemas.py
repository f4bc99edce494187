"""JSON Schemas of the registered tools, in the shapes other agents consume.

- `input_schema` / `output_schema`: self-contained JSON Schema (Draft 2020-12) objects:
  `$ref`s inlined (several providers reject them in tool parameters), property titles
  dropped (descriptions carry the meaning, titles only cost tokens).
- `openai_tools`: OpenAI / litellm function-calling tools.
- `render_docs`: the reference page docs/tools.md, generated and checked by a test.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from medloop.tools.context import ToolLimits
from medloop.tools.registry import Registry, ToolSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _inline(node: Any, defs: dict[str, Any], stack: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in stack:
                raise ValueError(f"recursive schema through {name}; tool models must not be recursive")
            target = _inline(defs[name], defs, (*stack, name))
            extra = {k: _inline(v, defs, stack) for k, v in node.items() if k != "$ref"}
            return {**target, **extra}
        out = {}
        for key, value in node.items():
            if key == "$defs":
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {prop: _drop_title(_inline(sub, defs, stack)) for prop, sub in value.items()}
            else:
                out[key] = _inline(value, defs, stack)
        return out
    if isinstance(node, list):
        return [_inline(item, defs, stack) for item in node]
    return node


def _drop_title(node: Any) -> Any:
    if isinstance(node, dict) and isinstance(node.get("title"), str):
        return {k: v for k, v in node.items() if k != "title"}
    return node


def model_schema(model: type[BaseModel], *, mode: str = "validation") -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation" if mode == "validation" else "serialization")
    schema: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    schema.pop("title", None)
    return schema


def input_schema(spec: ToolSpec[Any, Any]) -> dict[str, Any]:
    schema = model_schema(spec.input_model)
    schema.setdefault("properties", {})
    return schema


def output_schema(spec: ToolSpec[Any, Any]) -> dict[str, Any]:
    return model_schema(spec.output_model, mode="serialization")


def description(spec: ToolSpec[Any, Any]) -> str:
    """The LLM-facing description: the docstring plus who may call it."""
    return f"{spec.description}\n\nRoles: {', '.join(spec.roles)}. Version {spec.version}."


def openai_tool(spec: ToolSpec[Any, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": description(spec), "parameters": input_schema(spec)},
    }


def openai_tools(registry: Registry) -> list[dict[str, Any]]:
    return [openai_tool(spec) for spec in registry]


def catalog(registry: Registry) -> list[dict[str, Any]]:
    """Everything about every tool, as JSON (`medloop tools schema --format json`)."""
    return [
        {
            "name": spec.name,
            "version": spec.version,
            "summary": spec.summary,
            "description": spec.description,
            "roles": list(spec.roles),
            "read_only": spec.read_only,
            "long_running": spec.long_running,
            "input_schema": {"$schema": SCHEMA_DIALECT, **input_schema(spec)},
            "output_schema": {"$schema": SCHEMA_DIALECT, **output_schema(spec)},
            "example": spec.example,
        }
        for spec in registry
    ]


def _fields_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        kind = _type_name(prop)
        desc = str(prop.get("description", "")).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {desc} |")
    return rows


def _type_name(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " \\| ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " \\| ".join(_type_name(p) for p in prop["anyOf"])
    kind = prop.get("type", "object")
    if kind == "array":
        return f"array of {_type_name(prop.get('items', {}))}"
    return str(kind)


def render_docs(registry: Registry) -> str:
    """docs/tools.md. Generated: edit the tools' docstrings and models, then run
    `medloop tools docs --write docs/tools.md` (a test fails when the page drifts)."""
    lines = [
        "# medloop tools",
        "",
        "<!-- Generated by `medloop tools docs --write docs/tools.md`; do not edit by hand. -->",
        "",
        "Typed tools other agents call: from Python (`medloop.tools.catalog.default_registry()`),",
        "as OpenAI/litellm function-calling schemas (`medloop tools schema --format openai`;",
        "`medloop.tools.adapters_openai.run_tool_calls` answers the calls a model makes),",
        "as LangChain tools (`medloop.tools.adapters_langchain.langchain_tools`) and over MCP",
        "(`medloop mcp` on stdio, `medloop mcp --http` with a bearer token).",
        "",
        "Every call acts as a caller (a name and a role: viewer, agent, reviewer or admin; agent",
        "by default). Budgets (trials, GPU-hours, campaigns per window) are kept per caller",
        "name; `MEDLOOP_TOOLS_*` settings set them. Invalid arguments are refused with the",
        "field, what is wrong and what is allowed. No tool can raise a claim's trust.",
        "",
        "## Using the tools",
        "",
        "- Python: `ctx = bootstrap.tool_context(Settings(), Caller('me', 'agent'))`, then",
        "  `default_registry().call('dataset_check', ctx, {'path': ...})` (a pydantic model back).",
        "- LangChain / LangGraph: `langchain_tools(default_registry(), ctx)` gives StructuredTools for",
        "  `ToolNode` or `create_react_agent`; refusals come back as error tool messages.",
        "- MCP over stdio: `medloop mcp --caller NAME --role agent` (one caller per session).",
        "- MCP over streamable HTTP: `MEDLOOP_MCP_TOKEN=<secret> medloop mcp --http --port 8765`",
        "  serves `/mcp`; every request needs `Authorization: Bearer <token>`, and the token decides",
        "  the caller (`--caller/--role` for MEDLOOP_MCP_TOKEN; more callers by token hash with",
        '  `--token-file`: `{"tokens": [{"caller": "lab-agent", "role": "agent", "token_sha256": "..."}]}`).',
        "- Long work returns handles (run_trial, campaign_start): poll trial_status / campaign_status",
        "  with `wait_s`; over MCP they send progress notifications while they wait.",
        "",
        "| tool | version | roles | summary |",
        "|---|---|---|---|",
    ]
    for spec in registry:
        lines.append(
            f"| [`{spec.name}`](#{spec.name}) | {spec.version} | {', '.join(spec.roles)} | {spec.summary} |"
        )
    lines += ["", "## Limits and budgets", "", "| setting | default | meaning |", "|---|---|---|"]
    for name, info in ToolLimits.model_fields.items():
        default = "(empty)" if info.default in ("", None) else f"`{info.default}`"
        lines.append(f"| `MEDLOOP_TOOLS_{name.upper()}` | {default} | {info.description or ''} |")
    for spec in registry:
        traits = ["read-only" if spec.read_only else "writes"]
        if spec.long_running:
            traits.append("long-running: returns a handle, reports progress")
        lines += [
            "",
            f"## {spec.name}",
            "",
            f"Version {spec.version}; roles: {', '.join(spec.roles)}; {'; '.join(traits)}.",
            "",
            spec.description,
            "",
            "### Input",
            "",
            *_fields_table(input_schema(spec)),
            "",
            "### Output",
            "",
            *_fields_table(output_schema(spec)),
            "",
            "### Example call",
            "",
            "```json",
            json.dumps({"name": spec.name, "arguments": spec.example}, indent=2),
            "```",
            "",
            "<details><summary>Input JSON Schema</summary>",
            "",
            "```json",
            json.dumps(input_schema(spec), indent=2),
            "```",
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"
