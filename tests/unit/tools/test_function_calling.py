"""The OpenAI/litellm function-calling schemas round-trip through litellm: its tool types
and provider conversion accept them unchanged, `litellm.completion` sends them to an
OpenAI-compatible server as they are, and the tool calls that come back run through the
registry."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import litellm
from litellm.types.llms.openai import ChatCompletionToolParam
from litellm.utils import validate_and_fix_openai_tools
from pydantic import TypeAdapter
from typer.testing import CliRunner

from medloop.cli import app
from medloop.core.errors import MedloopError
from medloop.tools.context import ToolContext
from medloop.tools.registry import Registry
from medloop.tools.schemas import openai_tools
from tests.openai_server import FakeOpenAI


def test_litellm_types_and_provider_conversion_keep_the_schemas(registry: Registry) -> None:
    tools = openai_tools(registry)
    assert TypeAdapter(list[ChatCompletionToolParam]).validate_python(tools) == tools
    assert validate_and_fix_openai_tools(tools) == tools
    anthropic = litellm.AnthropicConfig().map_openai_params(
        non_default_params={"tools": tools},
        optional_params={},
        model="claude-3-5-sonnet-20240620",
        drop_params=False,
    )["tools"]
    by_name = {spec.name: spec for spec in registry}
    assert [t["name"] for t in anthropic] == registry.names()
    for converted in anthropic:
        schema = converted["input_schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(by_name[converted["name"]].example, schema)


def test_completion_sends_the_tools_and_their_calls_run(
    registry: Registry, ctx: ToolContext, phantom: Path
) -> None:
    tools = openai_tools(registry)
    with FakeOpenAI() as server:
        server.replies.append(
            {
                "tool_calls": [
                    {"name": "dataset_check", "arguments": {"path": str(phantom)}},
                    {
                        "name": "search_knowledge",
                        "arguments": {"query": "loss functions for small organs", "k": 3},
                    },
                    {"name": "dataset_check", "arguments": {"folder": str(phantom)}},
                ]
            }
        )
        response = litellm.completion(
            model="openai/test-model",
            api_base=server.api_base,
            api_key="sk-test",
            messages=[{"role": "user", "content": "Check the phantom and see what is known."}],
            tools=tools,
        )
    sent = server.requests[0]["tools"]
    assert sent == json.loads(json.dumps(tools))  # byte-for-byte what the registry published
    calls = response.choices[0].message.tool_calls
    results = []
    for call in calls:
        spec = registry.get(call.function.name)
        try:
            out = spec(ctx, json.loads(call.function.arguments))
            results.append(("ok", out))
        except MedloopError as exc:  # the refused call is what an LLM would read back
            results.append(("error", exc))
    assert results[0][0] == "ok" and results[0][1].ok  # type: ignore[union-attr]
    assert results[1][0] == "ok"
    assert results[2][0] == "error" and "folder: unknown field; allowed fields: path" in str(results[2][1])


def test_cli_prints_the_schemas_in_each_format(registry: Registry) -> None:
    runner = CliRunner()
    openai = runner.invoke(app, ["tools", "schema", "--format", "openai"])
    assert openai.exit_code == 0, openai.output
    assert json.loads(openai.output) == openai_tools(registry)
    one = runner.invoke(app, ["tools", "schema", "--format", "mcp", "--tool", "trial_status"])
    listed = json.loads(one.output)
    assert [t["name"] for t in listed] == ["trial_status"] and listed[0]["annotations"][
        "readOnlyHint"
    ] is True
    assert "outputSchema" in listed[0] and listed[0]["_meta"]["medloop/version"] == 1
    bad = runner.invoke(app, ["tools", "schema", "--format", "yaml"])
    assert bad.exit_code != 0
