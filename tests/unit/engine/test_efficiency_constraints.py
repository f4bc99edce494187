"""Cost figures the host measures, cost per Dice point, and objective constraints; a
constraint-violating change never becomes the incumbent of a (replayed) campaign."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.agents.space import grid
from medloop.bootstrap import local_checkpoints
from medloop.core.errors import SpecError
from medloop.core.records import CaseEvaluation, JobResult, Provenance, SplitEvaluation, TrialResult
from medloop.core.specs import Constraint, FloatRange, Objective, parse_campaign_spec
from medloop.core.store import open_store
from medloop.engine.efficiency import figure, host_figures, violations, with_cost_per_case
from medloop.engine.replay import ReplayTrials, save_table, synthetic_table
from tests.fakes import FakeKnowledge


def _job(wall_s: float, gpus: list[int | str]) -> JobResult:
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="", ended_at="", gpu_ids=gpus)
    return JobResult(
        key="k", status="succeeded", exit_code=0, wall_s=wall_s, out_dir=Path("/x"), provenance=prov
    )


def _evaluation(dice: dict[str, float]) -> SplitEvaluation:
    cases = [CaseEvaluation(case=c, metrics={"dice": {"organ": v}}) for c, v in dice.items()]
    mean = sum(dice.values()) / len(dice)
    return SplitEvaluation(split="eval", cases=cases, summary={"dice": mean}, implementation="t")


def test_host_measures_gpu_hours_and_cost_per_dice_point() -> None:
    ev = _evaluation({"a": 0.8, "b": 0.6})
    gpu = host_figures(_job(1800.0, [0, 1]), ev)  # half an hour on two GPUs
    assert gpu["gpu_hours"] == pytest.approx(1.0) and gpu["job_hours"] == pytest.approx(1.0)
    assert gpu["cost_per_dice_point"] == pytest.approx(1.0 / 70.0)
    assert gpu["cost_unit"] == "GPU-hours per Dice point"
    cpu = host_figures(_job(3600.0, []), ev)
    assert cpu["gpu_hours"] == 0.0 and cpu["job_hours"] == pytest.approx(1.0)
    assert cpu["cost_unit"].startswith("CPU")
    # per case, for a cost objective: a case under one Dice point costs as if it had one
    per_case = with_cost_per_case(_evaluation({"a": 0.5, "b": 0.0}), 2.0)
    costs = {c.case: c.metrics["cost_per_dice_point"]["organ"] for c in per_case.cases}
    assert costs == {"a": pytest.approx(2.0 / 50), "b": pytest.approx(2.0)}
    assert per_case.summary["cost_per_dice_point"] == pytest.approx((0.04 + 2.0) / 2)


def test_constraints_read_efficiency_then_metrics_and_a_missing_figure_breaks_them() -> None:
    result = TrialResult(
        trial_id="t",
        spec_hash="h",
        status="succeeded",
        evaluations={"eval": _evaluation({"a": 0.9})},
        efficiency={"inference_s_per_case_max": 75.0, "parameters": 1000},
    )
    slow = Objective(constraints=[Constraint(metric="inference_s_per_case_max", max=60)])
    assert violations(result, slow) == ["inference_s_per_case_max 75 > 60"]
    ok = Objective(
        constraints=[
            Constraint(metric="inference_s_per_case_max", max=90),
            Constraint(metric="dice", min=0.8),
        ]
    )
    assert violations(result, ok) == [] and figure(result, "dice") == pytest.approx(0.9)
    assert violations(result, Objective(constraints=[Constraint(metric="peak_memory_mb", max=1)])) == [
        "peak_memory_mb not recorded"
    ]
    with pytest.raises(ValueError, match="give max, min or both"):
        Constraint(metric="gpu_hours")


LRS: list[Any] = grid(FloatRange(type="float", low=0.0003, high=0.003, log=True))


def _spec(table: Path, constraints: list[dict[str, Any]]) -> Any:
    data = {
        "name": "constrained",
        "goal": "Raise Dice with inference <= 60 s per case",
        "dataset": {"path": str(table.parent)},
        "objective": {"metric": "dice", "constraints": constraints},
        "baseline": {"loss": "dice", "augmentation": "none", "lr": 0.0003},
        "search_space": {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": LRS},
        "validation": {"seeds_per_arm": 3, "reproduction_seeds": 3, "min_effect": 0.005},
        "budget": {"max_cycles": 4, "patience": 2},
        "executor": {"kind": "table", "table": str(table)},
        "planner": {"hypotheses_per_cycle": 2},
    }
    return parse_campaign_spec(data, source="test", check_dataset=True)


def test_campaign_spec_rejects_an_unknown_constraint(tmp_path: Path) -> None:
    table = tmp_path / "t.json"
    space = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": LRS}
    save_table(synthetic_table(space=space, effect=lambda c: 0.0, n_cases=4), table)
    with pytest.raises(SpecError, match="inference_per_case"):
        _spec(table, [{"metric": "inference_per_case", "max": 60}])


def test_a_constraint_violating_change_never_becomes_incumbent(tmp_path: Path) -> None:
    """dicece is truly better by 0.04 (an unconstrained campaign on this table promotes it,
    see test_replay_campaign), but its runs take 90 s per case; the lr gain is within bounds."""
    space = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": LRS}

    def effect(cfg: dict[str, Any]) -> float:
        return 0.04 * (cfg["loss"] == "dicece") + 0.03 - 0.03 * abs(math.log10(cfg["lr"] / 0.001))

    table = synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=3)
    outcomes = [
        o.model_copy(
            update={
                "efficiency": {"inference_s_per_case_max": 90.0 if o.config["loss"] == "dicece" else 20.0}
            }
        )
        for o in table.outcomes
    ]
    path = tmp_path / "table.json"
    save_table(table.model_copy(update={"outcomes": outcomes}), path)

    def run(constraints: list[dict[str, Any]]) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
        store = open_store(tmp_path / f"m{len(constraints)}.db")
        services = CampaignServices(
            store=store,
            knowledge=FakeKnowledge(store),
            make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=spec.executor.table),  # type: ignore[arg-type]
            make_planner=lambda spec: OfflinePlanner(),
            checkpoints=local_checkpoints(tmp_path / f"ckpt{len(constraints)}.sqlite"),
        )
        events: list[tuple[str, dict[str, Any]]] = []
        runner = CampaignRunner(services, on_event=lambda k, p: events.append((k, p)))
        return runner.run(runner.create(_spec(path, constraints), owner="alice").id), events

    free, _ = run([])
    assert free.incumbent["loss"] == "dicece"  # the fault the constraint must stop
    bound, events = run([{"metric": "inference_s_per_case_max", "max": 60}])
    assert bound.status == "completed"
    assert bound.incumbent["loss"] == "dice"
    blocked = [p for k, p in events if k == "constraint"]
    assert blocked and all("inference_s_per_case_max 90 > 60" in v for p in blocked for v in p["violations"])
