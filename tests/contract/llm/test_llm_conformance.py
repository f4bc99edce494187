"""Conformance suite of `LLMClient` (llm/base.py): every backend runs the same tests.

Backends: the scripted client (tests) and the litellm client talking to a local
OpenAI-compatible server (tests/openai_server.py), exactly as it talks to a provider.
A case queues replies (text, tool calls, a provider outage) and reports what the model
received; the tests check only what the protocol promises.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from medloop.core.errors import LLMError, MedloopError
from medloop.llm.base import Completion, LLMClient, Message, ToolCall
from medloop.llm.litellm_client import LiteLLMClient
from medloop.llm.scripted import ScriptedLLM
from tests.openai_server import FakeOpenAI


@dataclass
class LLMCase:
    name: str
    client: LLMClient
    say: Callable[[str], None]
    call_tool: Callable[[str, dict[str, Any]], None]
    # The next call fails the way the provider fails (an outage; no reply left).
    outage: Callable[[], None]
    # The messages of every call the model received, as (role, content) pairs.
    received: Callable[[], list[list[tuple[str, Any]]]]


def _scripted() -> Iterator[LLMCase]:
    llm = ScriptedLLM([])
    yield LLMCase(
        name="scripted",
        client=llm,
        say=llm.replies.append,
        call_tool=lambda name, args: llm.replies.append(
            Completion(tool_calls=[ToolCall(id="call_0", name=name, arguments=args)], model="scripted")
        ),
        outage=lambda: None,  # an empty script is the scripted provider's outage
        received=lambda: [[(m.role, m.content) for m in call] for call in llm.calls],
    )


def _litellm() -> Iterator[LLMCase]:
    with FakeOpenAI() as server:
        # retries=0: one queued outage is one failed call (litellm would retry otherwise).
        client = LiteLLMClient("openai/test-model", api_base=server.api_base, api_key="sk-test", retries=0)
        yield LLMCase(
            name="litellm",
            client=client,
            say=server.replies.append,
            call_tool=lambda name, args: server.replies.append(
                {"tool_calls": [{"name": name, "arguments": args}]}
            ),
            outage=lambda: server.replies.append({"http_status": 503}),
            received=lambda: [
                [(m["role"], m["content"]) for m in body["messages"]] for body in server.requests
            ],
        )


@pytest.fixture(params=["scripted", "litellm"])
def case(request: pytest.FixtureRequest) -> Iterator[LLMCase]:
    yield from {"scripted": _scripted, "litellm": _litellm}[request.param]()


MESSAGES = [
    Message(role="system", content="You plan experiments."),
    Message(role="user", content="Propose one change."),
]


def test_a_text_reply_comes_back_as_a_completion(case: LLMCase) -> None:
    case.say("raise the learning rate")
    reply = case.client.complete(MESSAGES)
    assert isinstance(reply, Completion)
    assert reply.text == "raise the learning rate"
    assert reply.tool_calls == []
    assert reply.usage.prompt_tokens >= 0 and reply.usage.completion_tokens >= 0
    assert reply.usage.cost_usd >= 0.0


def test_the_model_receives_the_messages_in_order(case: LLMCase) -> None:
    case.say("ok")
    case.client.complete(MESSAGES)
    assert case.received() == [[("system", "You plan experiments."), ("user", "Propose one change.")]]


def test_one_call_is_one_model_reply_never_a_cached_or_repeated_one(case: LLMCase) -> None:
    case.say("first")
    case.say("second")
    assert case.client.complete(MESSAGES).text == "first"
    assert case.client.complete(MESSAGES).text == "second"
    assert len(case.received()) == 2


def test_tool_calls_come_back_with_parsed_arguments(case: LLMCase) -> None:
    args = {"hypotheses": [{"statement": "dicece helps", "changes": {"loss": "dicece"}}]}
    case.call_tool("propose_hypotheses", args)
    tool = {"type": "function", "function": {"name": "propose_hypotheses", "parameters": {"type": "object"}}}
    reply = case.client.complete(MESSAGES, tools=[tool])
    [call] = reply.tool_calls
    assert call.name == "propose_hypotheses"
    assert call.arguments == args
    assert call.id


def test_a_json_reply_passes_through_unchanged(case: LLMCase) -> None:
    payload = {"hypotheses": [], "note": 'ünïcode and "quotes"'}
    case.say(json.dumps(payload))
    reply = case.client.complete(MESSAGES, response_format={"type": "json_object"}, max_tokens=64)
    assert json.loads(reply.text) == payload


def test_a_provider_outage_is_an_llm_error_and_the_client_recovers(case: LLMCase) -> None:
    case.outage()
    with pytest.raises(LLMError) as info:
        case.client.complete(MESSAGES)
    assert isinstance(info.value, MedloopError)
    assert info.value.message  # one line saying what failed
    case.say("back")
    assert case.client.complete(MESSAGES).text == "back"
