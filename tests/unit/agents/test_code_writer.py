"""The LLM planner's write-code step against a local OpenAI-compatible server: valid code
is accepted, a syntax error is fixed on the second try (the error is fed back), code that
opens a socket or imports a forbidden module never gets past the host checks, code that
loops forever or names result.json/labels passes the checks (the smoke trial and host-side
scoring deal with it) and is flagged; the step keeps to its token cap; and in a whole
campaign the module the LLM wrote is stored, tested first and certified like any change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.agents.planners.code_writer import CodeRequest
from medloop.agents.planners.llm import LLMPlanner
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.code import source_sha256
from medloop.core.specs import CampaignSpec
from medloop.core.store import open_store
from medloop.engine.code import check_source
from medloop.engine.replay import ReplayTrials, save_table, synthetic_table
from medloop.llm.litellm_client import LiteLLMClient
from tests.fakes import FakeKnowledge
from tests.openai_server import FakeOpenAI
from tests.unit.agents.test_code_planning import HUMAN, LRS, SBR
from tests.unit.agents.test_code_planning import _spec as code_spec

VALID = '''import numpy as np

EXTENSION_POINT = "postprocess"


def postprocess(label_map, spacing, labels):
    """Drop isolated foreground voxels."""
    return np.asarray(label_map)
'''
SYNTAX = VALID.replace("return np.asarray(label_map)", "return np.asarray(label_map")
SOCKET = "import socket\n" + VALID.replace(
    "return np.asarray(label_map)", "socket.create_connection(('10.0.0.1', 80))\n    return label_map"
)
FORBIDDEN = "import os\n" + VALID.replace(
    "return np.asarray(label_map)", "os.system('id')\n    return label_map"
)
LOOP = VALID.replace("return np.asarray(label_map)", "while True:\n        pass")
CHEAT = VALID.replace(
    "return np.asarray(label_map)",
    "np.savetxt('/out/result.json', [1.0])\n    np.load('/in/labelsTr/case_000.npy')\n    return label_map",
)


def reply(source: str) -> str:
    return f"Here is the module.\n```python\n{source}```\nRATIONALE: removes noise blobs.\n"


def _planner(server: FakeOpenAI) -> LLMPlanner:
    client = LiteLLMClient("openai/test-model", api_base=server.api_base, api_key="sk-test", retries=0)
    return LLMPlanner(client, fallback=OfflinePlanner())


@pytest.fixture
def spec(tmp_path: Path) -> CampaignSpec:
    (tmp_path / "table.json").write_text("{}")
    return code_spec(tmp_path / "table.json")


def _write(spec: CampaignSpec, replies: list[str], **request: Any) -> tuple[Any, FakeOpenAI]:
    with FakeOpenAI() as server:
        server.replies.extend(replies)
        draft = _planner(server).write_code(spec, CodeRequest(point="postprocess", **request))
    return draft, server


def test_valid_code_is_accepted_with_its_rationale(spec: CampaignSpec) -> None:
    draft, server = _write(spec, [reply(VALID)], claims=["Blob removal raised Dice"], last_error="hung")
    assert draft.source == VALID and draft.attempts == 1 and draft.rationale == "removes noise blobs."
    prompt = server.requests[0]["messages"][1]["content"]
    assert "postprocess(label_map, spacing, labels)" in prompt
    assert "> Blob removal raised Dice" in prompt and "hung" in prompt  # claims quoted, last error shown


def test_a_syntax_error_is_fed_back_and_fixed_on_the_second_try(spec: CampaignSpec) -> None:
    draft, server = _write(spec, [reply(SYNTAX), reply(VALID)])
    assert draft.source == VALID and draft.attempts == 2
    assert draft.errors and "syntax error at line" in draft.errors[0]
    feedback = server.requests[1]["messages"][-1]["content"]
    assert "failed the host checks" in feedback and "syntax error" in feedback


@pytest.mark.parametrize(("source", "problem"), [(SOCKET, "imports 'socket'"), (FORBIDDEN, "imports 'os'")])
def test_sockets_and_forbidden_imports_never_pass(spec: CampaignSpec, source: str, problem: str) -> None:
    draft, server = _write(spec, [reply(source)] * 5)
    assert draft.source is None and draft.attempts == spec.code.write_attempts == 3
    assert len(server.requests) == 3 and all(problem in e for e in draft.errors)


def test_no_code_block_is_an_error_fed_back(spec: CampaignSpec) -> None:
    draft, _ = _write(spec, ["I would rather not.", reply(VALID)])
    assert draft.attempts == 2 and "no ```python fenced block" in draft.errors[0]


def test_an_endless_loop_passes_the_checks_for_the_smoke_trial_to_catch(spec: CampaignSpec) -> None:
    draft, _ = _write(spec, [reply(LOOP)])
    assert draft.source == LOOP  # statically fine; tests/unit/engine/test_code_smoke*.py reject it


def test_code_naming_result_json_or_labels_is_flagged_for_the_reviewer(spec: CampaignSpec) -> None:
    draft, _ = _write(spec, [reply(CHEAT)])
    assert draft.source == CHEAT
    flags = check_source(CHEAT).flags
    assert any("result.json" in f for f in flags) and any("labelsTr" in f for f in flags)


def test_the_write_step_keeps_to_its_token_cap(spec: CampaignSpec) -> None:
    capped = spec.model_copy(update={"code": spec.code.model_copy(update={"write_tokens": 100})})
    draft, server = _write(capped, [reply(SYNTAX)] * 3)
    # the first call spends 120 tokens (the fake server's usage); the second is refused
    assert len(server.requests) == 1 and draft.source is None
    assert "write-code token budget spent" in draft.errors[-1]


def test_an_llm_written_module_is_tested_in_the_campaign(tmp_path: Path) -> None:
    """Syntax error, fixed on the second try, stored as an LLM module, tested first."""
    written = HUMAN.replace("a person's module", "an LLM's module")
    space: dict[str, list[Any]] = {"lr": LRS, "code_postprocess": ["none", SBR, source_sha256(written)]}
    table = tmp_path / "table.json"
    save_table(synthetic_table(space=space, effect=lambda c: 0.0, n_cases=24, rng_seed=3), table)
    spec = code_spec(table, cycles=1).model_copy(
        update={
            "planner": code_spec(table).planner.model_copy(update={"kind": "llm", "model": "openai/test"})
        }
    )

    def respond(body: dict[str, Any]) -> str:
        if body.get("tools"):  # the planning call: no ideas (the offline planner fills in)
            return '{"hypotheses": []}'
        bad = sum(1 for m in body["messages"] if m["role"] == "assistant") == 0
        return reply(written.replace("return np.asarray(label_map)", "return (") if bad else written)

    with FakeOpenAI(respond) as server:
        store = open_store(tmp_path / "m.db")
        services = CampaignServices(
            store=store,
            knowledge=FakeKnowledge(store),
            make_trials=lambda s, _cid: ReplayTrials(store, s, table=table),
            make_planner=lambda s: _planner(server),
            checkpoints=local_checkpoints(tmp_path / "ckpt.sqlite"),
        )
        events: list[tuple[str, dict[str, Any]]] = []
        runner = CampaignRunner(services, on_event=lambda k, p: events.append((k, p)))
        done = runner.run(runner.create(spec, owner="alice").id)
    [module] = [m for m in store.code.list() if m.author_kind == "llm"]
    assert module.sha256 == source_sha256(written) and module.campaign_id == done.id
    assert module.author == "llm:test-model" or module.author.startswith("llm:")
    written_events = [p for k, p in events if k == "code_written"]
    assert written_events[0]["ok"] and written_events[0]["attempts"] == 2
    first = store.cycles.hypotheses(done.id, 1)[0]
    assert first.changes[0].to_value == module.sha256 and first.source == "llm"
    assert first.verdict in ("supported", "refuted", "inconclusive")
