"""Conformance suite of `Planner` (agents/base.py): every planner runs the same tests.

Planners: the offline knowledge-guided search alone, the offline search with its
model-based proposer (Optuna TPE, planners/tpe.py), and the LLM planner talking through
litellm to a local OpenAI-compatible server (tests/openai_server.py) whose model answers
like a careless LLM: some ideas valid, one outside the space, one citing a claim that was
never retrieved. The promise checked: at most `n` hypotheses, each a real change of the
incumbent inside the search space, citing only retrieved evidence, and a state that
survives a JSON round trip into a fresh planner.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from medloop.agents.base import HistoryRow, Planner, PlanningContext
from medloop.agents.planners.llm import LLMPlanner
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.space import apply_changes, validate_changes
from medloop.core.records import Claim, ClaimContext, Effect, FactorChange
from medloop.core.specs import CampaignSpec, parse_campaign_spec
from medloop.knowledge.base import RetrievedClaim
from medloop.llm.litellm_client import LiteLLMClient
from tests.openai_server import FakeOpenAI


@dataclass
class PlannerCase:
    name: str
    planner: Planner
    fresh: Callable[[], Planner]  # another planner of this kind (a restarted process builds one)


def _careless_llm(body: dict[str, Any]) -> dict[str, Any]:
    """A model that half follows the prompt: valid ideas, one out of range, one bad citation."""
    prompt = body["messages"][-1]["content"]
    loss = "dice" if '"loss": "dicece"' in prompt else "dicece"
    plan = {
        "hypotheses": [
            {"statement": f"{loss} helps", "changes": {"loss": loss}, "evidence_ids": ["clm_known"]},
            {"statement": "huge lr", "changes": {"lr": 5.0}},
            {
                "statement": "light aug",
                "changes": {"augmentation": "light"},
                "evidence_ids": ["clm_invented"],
            },
        ]
    }
    return {"tool_calls": [{"name": "propose_hypotheses", "arguments": plan}]}


def _llm() -> Iterator[PlannerCase]:
    with FakeOpenAI(responder=_careless_llm) as server:

        def make() -> LLMPlanner:
            client = LiteLLMClient("openai/test-model", api_base=server.api_base, api_key="k", retries=0)
            return LLMPlanner(client, fallback=OfflinePlanner(), budget_tokens=100_000)

        yield PlannerCase("llm", make(), make)
        assert server.requests, "the LLM planner never asked its model"


def _offline(model_based: bool) -> Callable[[], Iterator[PlannerCase]]:
    def build() -> Iterator[PlannerCase]:
        def make() -> OfflinePlanner:
            return OfflinePlanner(seed=3, model_based=model_based)

        yield PlannerCase("offline+tpe" if model_based else "offline", make(), make)

    return build


BUILDERS = {"offline": _offline(False), "offline+tpe": _offline(True), "llm": _llm}


@pytest.fixture(params=list(BUILDERS))
def case(request: pytest.FixtureRequest) -> Iterator[PlannerCase]:
    yield from BUILDERS[request.param]()


def campaign_spec() -> CampaignSpec:
    return parse_campaign_spec(
        {
            "name": "planner-contract",
            "goal": "Raise Dice",
            "dataset": {"path": "/nonexistent/Dataset001"},
            "baseline": {"loss": "dice", "augmentation": "none", "lr": 0.001},
            "search_space": {
                "loss": ["dice", "dicece"],
                "augmentation": ["none", "light"],
                "lr": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
            },
        },
        source="test",
        check_dataset=False,
    )


def _claim() -> RetrievedClaim:
    claim = Claim(
        id="clm_known",
        campaign_id=None,
        hypothesis_id=None,
        statement="dicece beat dice by 0.03",
        changes=[FactorChange(factor="loss", from_value="dice", to_value="dicece")],
        context=ClaimContext(task="segmentation", dataset="D", dataset_checksum="x"),
        outcome="dice",
        effect=Effect(
            metric="dice",
            direction="maximize",
            estimate=0.03,
            ci_low=0.01,
            ci_high=0.05,
            p_value=0.001,
            p_adjusted=0.002,
            test="wilcoxon",
            n_cases=20,
            n_seeds=3,
            min_effect=0.0,
            alpha=0.05,
        ),
        tier="reproduced",
    )
    return RetrievedClaim(claim=claim, score=0.9, role="evidence", reasons=["same change"])


def context(*, n: int, cycle: int = 1, incumbent: dict[str, Any] | None = None) -> PlanningContext:
    spec = campaign_spec()
    base = spec.baseline_config().model_dump()
    current = {**base, **(incumbent or {})}
    runs = [(base, seed, 0.70 + 0.01 * seed) for seed in range(3)]
    return PlanningContext(
        campaign_id="cmp_contract",
        cycle=cycle,
        spec=spec,
        incumbent=current,
        incumbent_objective=0.72,
        history=[],
        retrieved=[_claim()],
        tested_configs=[base, current],
        measured=[(base, 0.71)],
        runs=runs,
        n=n,
    )


def assert_valid(ctx: PlanningContext, drafts: list[Any]) -> None:
    assert len(drafts) <= ctx.n
    known = {r.claim.id for r in ctx.retrieved}
    for draft in drafts:
        problem = validate_changes(ctx.spec, ctx.incumbent, draft.changes)
        assert problem is None, f"{draft.statement}: {problem}"
        for change in draft.changes:
            assert change.from_value == ctx.incumbent.get(change.factor)
        assert set(draft.evidence_ids) <= known, draft.evidence_ids


@pytest.mark.parametrize("n", [1, 3])
def test_at_most_n_hypotheses_each_a_change_inside_the_space(case: PlannerCase, n: int) -> None:
    ctx = context(n=n)
    drafts = case.planner.propose(ctx)
    assert drafts, "a fresh space with untested neighbours yields at least one hypothesis"
    assert_valid(ctx, drafts)


def test_changes_start_from_the_current_incumbent_not_the_baseline(case: PlannerCase) -> None:
    ctx = context(n=2, cycle=3, incumbent={"loss": "dicece", "lr": 0.002})
    ctx = ctx.model_copy(
        update={
            "history": [
                HistoryRow(cycle=1, changes={"loss": "dicece"}, before={"loss": "dice"}, verdict="supported"),
                HistoryRow(cycle=2, changes={"lr": 0.002}, before={"lr": 0.001}, verdict="supported"),
            ]
        }
    )
    drafts = case.planner.propose(ctx)
    assert_valid(ctx, drafts)


def test_cycle_after_cycle_the_proposals_stay_valid(case: PlannerCase) -> None:
    ctx = context(n=2)
    for cycle in range(1, 4):
        drafts = case.planner.propose(ctx)
        assert_valid(ctx, drafts)
        proposed = [apply_changes(ctx.incumbent, d.changes) for d in drafts]
        ctx = ctx.model_copy(
            update={
                "cycle": cycle + 1,
                "tested_configs": [*ctx.tested_configs, *proposed],
                "runs": [*ctx.runs, *((cfg, 0, 0.7) for cfg in proposed)],
            }
        )


def test_state_survives_a_json_round_trip_into_a_fresh_planner(case: PlannerCase) -> None:
    case.planner.propose(context(n=2))
    state = json.loads(json.dumps(case.planner.state()))
    restarted = case.fresh()
    restarted.load_state(state)
    assert json.loads(json.dumps(restarted.state())) == state
    ctx = context(n=2, cycle=2)
    assert_valid(ctx, restarted.propose(ctx))
