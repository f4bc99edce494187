"""The OpenAI/litellm function-calling schemas round-trip through litellm: its tool types
and provider conversion accept them unchanged, `litellm.completion` sends them to an
OpenAI-compatible server as they are, and the tool calls that come back run through the
registry."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import litellm
import pytest
from litellm.types.llms.openai import ChatCompletionToolParam
from litellm.utils import validate_and_fix_openai_tools
from pydantic import TypeAdapter
from typer.testing import CliRunner

from medloop import bootstrap
from medloop.cli import app
from medloop.core.settings import Settings
from medloop.llm.base import Message
from medloop.tools.adapters_openai import openai_tools as adapter_tools
from medloop.tools.adapters_openai import run_tool_calls
from medloop.tools.context import ToolContext
from medloop.tools.registry import Registry
from medloop.tools.schemas import openai_tools
from tests.openai_server import FakeOpenAI

# litellm's TypedDicts mark some keys ReadOnly, which pydantic warns about when it builds them.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")


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
    """Raw litellm: the request carries exactly the published tools; the calls run."""
    tools = openai_tools(registry)
    with FakeOpenAI() as server:
        server.replies.append(
            {"tool_calls": [{"name": "dataset_check", "arguments": {"path": str(phantom)}}]}
        )
        response = litellm.completion(
            model="openai/test-model",
            api_base=server.api_base,
            api_key="sk-test",
            messages=[{"role": "user", "content": "Check the phantom."}],
            tools=tools,
        )
    assert server.requests[0]["tools"] == json.loads(json.dumps(tools))  # byte-for-byte what was published
    call = response.choices[0].message.tool_calls[0]
    out = registry.get(call.function.name)(ctx, json.loads(call.function.arguments))
    assert out.ok  # type: ignore[attr-defined]


def test_medloop_llm_client_loop_answers_tool_calls(
    registry: Registry, ctx: ToolContext, phantom: Path, tool_settings: Settings
) -> None:
    """medloop's own LLMClient (litellm backend) with the function-calling adapter: good
    calls answer with the tool's JSON, bad ones with the fields to fix."""
    only = ["dataset_check", "search_knowledge"]
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
        settings = tool_settings.model_copy(
            update={"llm_api_base": server.api_base, "llm_api_key": "sk-test"}
        )
        llm = bootstrap.llm(settings, "openai/test-model")
        reply = llm.complete(
            [Message(role="user", content="Check it")], tools=adapter_tools(registry, only=only)
        )
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == only
    answers = run_tool_calls(registry, ctx, reply.tool_calls)
    assert [(m.role, m.name, m.tool_call_id) for m in answers] == [
        ("tool", "dataset_check", "call_0"),
        ("tool", "search_knowledge", "call_1"),
        ("tool", "dataset_check", "call_2"),
    ]
    assert json.loads(str(answers[0].content))["ok"] is True
    assert "results" in json.loads(str(answers[1].content))
    refused = json.loads(str(answers[2].content))
    assert refused["error"] == "ToolInputError"
    assert refused["fields"] == [
        {"field": "path", "problem": "required but missing"},
        {"field": "folder", "problem": "unknown field; allowed fields: path"},
    ]


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
