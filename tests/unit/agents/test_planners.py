"""Offline planner: candidates, knowledge-guided ranking, TPE proposals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medloop.agents.base import PlanningContext
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.planners.tpe import suggest_numeric
from medloop.agents.space import grid, neighbours
from medloop.core.records import Claim, ClaimContext, Effect, FactorChange
from medloop.core.specs import FloatRange
from medloop.knowledge.base import RetrievedClaim
from tests.unit.agents.test_replay_campaign import make_spec, table  # noqa: F401 - fixture


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


def test_grid_and_neighbours() -> None:
    lr = FloatRange(type="float", low=0.0003, high=0.003, log=True)
    points = grid(lr)
    assert len(points) == 7 and points[0] == 0.0003 and points[-1] == 0.003
    assert neighbours("lr", lr, 0.0003) == [points[1]]
    assert neighbours("lr", lr, points[3]) == [points[2], points[4]]


def test_refuted_claims_sink_and_reproduced_claims_lead(table: Path) -> None:  # noqa: F811
    spec = make_spec(table)

    def claim(cid: str, factor: str, to: Any, tier: str, est: float) -> RetrievedClaim:
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

    ctx = _ctx(
        spec,
        n=3,
        retrieved=[
            claim("clm_aug", "augmentation", "light", "reproduced", 0.03),
            claim("clm_loss", "loss", "dicece", "refuted", -0.02),
        ],
    )
    drafts = OfflinePlanner(model_based=False).propose(ctx)
    assert drafts[0].changes[0].factor == "augmentation" and drafts[0].evidence_ids == ["clm_aug"]
    assert drafts[-1].changes[0].factor == "loss"  # refuted: last


def test_tpe_suggests_untested_numeric_change(table: Path) -> None:  # noqa: F811
    spec = make_spec(table)
    inc = spec.baseline_config().model_dump()
    points = grid(FloatRange(type="float", low=0.0003, high=0.003, log=True))
    measured = [({**inc, "lr": p}, 0.6 + 0.1 * i) for i, p in enumerate(points[:4])]
    ctx = _ctx(spec, measured=measured, tested_configs=[cfg for cfg, _ in measured])
    changes = suggest_numeric(ctx, seed=1)
    assert changes is not None and [c.factor for c in changes] == ["lr"]
    assert changes[0].to_value in points and changes[0].to_value not in points[:4]
    assert suggest_numeric(_ctx(spec, measured=measured[:2]), seed=1) is None  # too few runs
