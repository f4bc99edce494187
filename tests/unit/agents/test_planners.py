"""Offline planner: candidates, knowledge-guided ranking, TPE proposals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medloop.agents.base import PlanningContext
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.planners.tpe import TpeProposer
from medloop.agents.space import config_key, grid, neighbours
from medloop.core.records import Claim, ClaimContext, Effect, FactorChange
from medloop.core.specs import FloatRange
from medloop.knowledge.base import RetrievedClaim
from tests.unit.agents.test_replay_campaign import LRS, make_spec, table  # noqa: F401 - fixture


def _ctx(spec: Any, **kw: Any) -> PlanningContext:
    base = dict(
        campaign_id="c",
        cycle=1,
        spec=spec,
        incumbent=spec.baseline_config().model_dump(),
        incumbent_objective=None,
        history=[],
        retrieved=[],
        tested_configs=[],
        n=2,
    )
    return PlanningContext(**{**base, **kw})


def _claim(cid: str, factor: str, to: Any, tier: str, est: float) -> RetrievedClaim:
    c = Claim(
        id=cid,
        campaign_id=None,
        hypothesis_id=None,
        statement=cid,
        changes=[FactorChange(factor=factor, from_value=None, to_value=to)],
        context=ClaimContext(task="segmentation", dataset="d", dataset_checksum="x"),
        outcome="dice",
        effect=Effect(
            metric="dice",
            direction="maximize",
            estimate=est,
            ci_low=est - 0.01,
            ci_high=est + 0.01,
            p_value=0.01,
            p_adjusted=0.01,
            test="w",
            n_cases=10,
            n_seeds=3,
            min_effect=0,
            alpha=0.05,
        ),
        tier=tier,
    )  # type: ignore[arg-type]
    return RetrievedClaim(
        claim=c, score=0.9, role="evidence" if tier == "reproduced" else "suggestion", reasons=[]
    )


def test_grid_and_neighbours() -> None:
    lr = FloatRange(type="float", low=0.0003, high=0.003, log=True)
    points = grid(lr)
    assert len(points) == 7 and points[0] == 0.0003 and points[-1] == 0.003
    assert neighbours("lr", lr, 0.0003) == [points[1]]
    assert neighbours("lr", lr, points[3]) == [points[2], points[4]]


def test_refuted_claims_sink_and_reproduced_claims_lead(table: Path) -> None:  # noqa: F811
    spec = make_spec(table)

    ctx = _ctx(
        spec,
        n=3,
        retrieved=[
            _claim("clm_aug", "augmentation", "light", "reproduced", 0.03),
            _claim("clm_loss", "loss", "dicece", "refuted", -0.02),
        ],
    )
    drafts = OfflinePlanner(model_based=False).propose(ctx)
    assert drafts[0].changes[0].factor == "augmentation" and drafts[0].evidence_ids == ["clm_aug"]
    assert drafts[-1].changes[0].factor == "loss"  # refuted: last


def _space_spec(path: Path, space: dict[str, Any], baseline: dict[str, Any]) -> Any:
    from medloop.core.specs import parse_campaign_spec

    return parse_campaign_spec(
        {
            "name": "tpe",
            "goal": "Raise Dice",
            "dataset": {"path": str(path.parent)},
            "baseline": baseline,
            "search_space": space,
            "budget": {"max_trials": 100},
        },
        source="test",
        check_dataset=False,
    )


def _runs(spec: Any, n: int, value: Any, seed: int = 0) -> list[tuple[dict[str, Any], int, float]]:
    """n random configs of the space, each run with 3 seeds, scored by `value`."""
    proposer = TpeProposer(spec.search_space, direction="maximize", seed=seed)
    inc = spec.baseline_config().model_dump()
    configs = proposer.ask(n, base=inc, exclude=set())
    return [(c, s, value(c) + 0.001 * s) for c in configs for s in range(3)]


def test_tpe_fires_for_categorical_factors_and_learns_from_runs(table: Path) -> None:  # noqa: F811
    space = {"loss": ["dice", "dicece", "dicefocal"], "augmentation": ["none", "light", "nnunet"], "lr": LRS}
    spec = _space_spec(table, space, {"loss": "dice", "augmentation": "none", "lr": LRS[0]})

    def value(c: dict[str, Any]) -> float:
        return 0.6 + 0.1 * (c["loss"] == "dicefocal") + 0.05 * (c["augmentation"] == "nnunet")

    runs = _runs(spec, 12, value)
    ctx = _ctx(spec, runs=runs, tested_configs=[c for c, _, _ in runs], n=2)
    drafts = OfflinePlanner().propose(ctx)
    assert any(d.rationale.startswith("TPE over 36 runs") for d in drafts)  # fires on categoricals
    asked = []
    for seed in range(20):  # one proposal each from 20 differently seeded models
        proposer = TpeProposer(spec.search_space, direction="maximize", seed=seed)
        for c, run_seed, v in runs:
            proposer.tell(c, v, seed=run_seed)
        asked += proposer.ask(1, base=ctx.incumbent, exclude={config_key(c) for c, _, _ in runs})
    good = sum(c["loss"] == "dicefocal" for c in asked)
    # a random draw picks dicefocal a third of the time
    assert good >= 12, f"TPE fitted to the runs should favour dicefocal, got {good}/20"


def test_float_ranges_are_searched_as_floats_with_multi_factor_moves(table: Path) -> None:  # noqa: F811
    space = {
        "loss": ["dice", "dicece"],
        "lr": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
        "weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
        "batch_size": {"type": "int", "low": 2, "high": 16},
    }
    spec = _space_spec(table, space, {"loss": "dice", "lr": 0.0003, "weight_decay": 0.0, "batch_size": 8})
    runs = _runs(spec, 10, lambda c: 0.6 + 0.1 * math.log10(c["lr"] / 0.0003) - c["weight_decay"])
    ctx = _ctx(spec, runs=runs, tested_configs=[c for c, _, _ in runs], n=3)
    points = set(grid(FloatRange(type="float", low=0.0003, high=0.003, log=True)))
    lrs, sizes = [], []
    for cycle in range(1, 6):
        for d in OfflinePlanner(seed=cycle).propose(ctx.model_copy(update={"cycle": cycle})):
            if d.rationale.startswith("TPE"):
                sizes.append(len(d.changes))
                lrs += [c.to_value for c in d.changes if c.factor == "lr"]
    assert lrs and all(0.0003 <= v <= 0.003 for v in lrs)
    assert not set(lrs) & points, "a float range is not a grid"
    assert len(set(lrs)) == len(lrs)
    assert max(sizes) >= 2  # proposals change several factors together
    bs = [c["batch_size"] for c, _, _ in runs]
    assert all(isinstance(b, int) for b in bs)


def test_conditional_factors_exist_only_where_active(table: Path) -> None:  # noqa: F811
    space = {
        "optimizer": ["adamw", "sgd"],
        "momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": ["sgd"]}},
        "lr": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
    }
    spec = _space_spec(table, space, {"optimizer": "adamw", "lr": 0.001})
    proposer = TpeProposer(spec.search_space, direction="maximize", seed=3)
    inc = spec.baseline_config().model_dump()
    asked = proposer.ask(30, base=inc, exclude=set())
    sgd = [c for c in asked if c["optimizer"] == "sgd"]
    adamw = [c for c in asked if c["optimizer"] == "adamw"]
    assert sgd and adamw
    assert all(c["momentum"] == inc["momentum"] for c in adamw)  # inactive: left as it was
    assert len({c["momentum"] for c in sgd}) == len(sgd)  # active: sampled
    # A run's inactive factor is not the model's: it is told only the active ones.
    assert proposer._params({**inc, "optimizer": "adamw", "momentum": 0.5}) == {
        "lr": inc["lr"],
        "optimizer": "adamw",
    }


def test_knowledge_warm_starts_the_model_as_priors(table: Path) -> None:  # noqa: F811
    spec = make_spec(table)
    ctx = _ctx(spec, n=2, retrieved=[_claim("clm_aug", "augmentation", "light", "reproduced", 0.03)])
    drafts = OfflinePlanner().propose(ctx)
    assert any("clm_aug" in d.evidence_ids for d in drafts)
    priors = OfflinePlanner.priors(ctx)
    assert priors and priors[0][2] == ["clm_aug"] and priors[0][1] > 0


def test_only_claims_that_showed_a_gain_become_a_few_priors(table: Path) -> None:  # noqa: F811
    spec = make_spec(table)
    retrieved = [
        _claim("clm_weak", "augmentation", "light", "inconclusive", 0.03),
        _claim("clm_bad", "loss", "dicece", "refuted", 0.02),
        *[_claim(f"clm_{i}", "lr", LRS[i], "supported", 0.01 * i) for i in range(1, 6)],
    ]
    priors = OfflinePlanner.priors(_ctx(spec, retrieved=retrieved))
    ids = [i for _, _, claim_ids in priors for i in claim_ids]
    assert len(priors) == 3 and "clm_weak" not in ids and "clm_bad" not in ids


def test_an_earlier_campaigns_path_of_gains_warm_starts_as_one_config(table: Path) -> None:  # noqa: F811
    """A related campaign that moved its incumbent twice (augmentation, then loss, then a
    later lr that replaced an earlier one) ends at a config no single claim names: that end
    point is the prior to try first, not each step on its own."""
    spec = make_spec(table)
    steps = [
        _claim("clm_a", "augmentation", "light", "reproduced", 0.03),
        _claim("clm_b", "lr", LRS[2], "reproduced", 0.01),
        _claim("clm_c", "loss", "dicece", "validated", 0.02),
        _claim("clm_d", "lr", LRS[4], "reproduced", 0.01),
    ]

    def made_in(item: RetrievedClaim, campaign: str, day: int) -> RetrievedClaim:
        claim = item.claim.model_copy(
            update={"campaign_id": campaign, "created_at": f"2026-01-{day:02d}T00:00:00+00:00"}
        )
        return item.model_copy(update={"claim": claim})

    steps = [made_in(item, "cmp_old", k + 1) for k, item in enumerate(steps)]
    # Another campaign's single step, and a refuted step of the same campaign: not on the path.
    lone = made_in(_claim("clm_lone", "augmentation", "light", "reproduced", 0.02), "cmp_other", 1)
    refuted = made_in(_claim("clm_r", "loss", "dice", "refuted", 0.05), "cmp_old", 9)
    ctx = _ctx(spec, retrieved=[steps[3], lone, steps[1], refuted, steps[0], steps[2]])
    changes, weight, ids = OfflinePlanner.priors(ctx)[0]
    assert {c.factor: c.to_value for c in changes} == {
        "augmentation": "light",
        "loss": "dicece",
        "lr": LRS[4],
    }
    assert ids == ["clm_a", "clm_b", "clm_c", "clm_d"]
    assert weight > max(w for _, w, i in OfflinePlanner.priors(ctx)[1:])
    # The planner proposes it, citing the whole path.
    drafts = OfflinePlanner().propose(_ctx(spec, retrieved=ctx.retrieved, n=3))
    assert any(set(d.evidence_ids) >= {"clm_a", "clm_d"} for d in drafts)
