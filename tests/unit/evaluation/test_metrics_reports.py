"""Bootstrap CIs, per-class/site reports, rank-then-aggregate and domain summaries."""

from __future__ import annotations

import math

import pytest

from medloop.core.errors import SpecError
from medloop.core.records import CaseEvaluation, DatasetManifest, SplitEvaluation
from medloop.evaluation.ranking import bootstrap_ci, describe, rank_then_aggregate, split_report
from medloop.evaluation.sites import domain_summary, training_sites


def _ev(
    values: dict[str, dict[str, float | None]], sites: dict[str, str] | None = None, metric: str = "dice"
) -> SplitEvaluation:
    cases = [
        CaseEvaluation(case=c, site=(sites or {}).get(c), metrics={metric: v})
        for c, v in sorted(values.items())
    ]
    return SplitEvaluation(split="eval", cases=cases, summary={metric: 0.0}, implementation="test")


def test_bootstrap_ci() -> None:
    values = [0.6, 0.7, 0.8, 0.9, 0.75, 0.65, 0.85, 0.7]
    low, high = bootstrap_ci(values, resamples=5000, seed=1)
    mean = sum(values) / len(values)
    assert low < mean < high and high - low < 0.2
    assert bootstrap_ci(values, resamples=5000, seed=1) == (low, high)
    wide = bootstrap_ci(values[:3], resamples=5000, seed=1)
    assert wide[1] - wide[0] > 0 and bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_describe_by_hand() -> None:
    ev = _ev({"a": {"x": 0.5, "y": 1.0}, "b": {"x": 0.7, "y": None}, "c": {"x": None, "y": None}})
    overall = describe(ev.cases, "dice")
    # foreground means per case: a 0.75, b 0.7, c undefined (left out)
    assert overall["n"] == 2 and overall["mean"] == pytest.approx(0.725)
    assert overall["sd"] == pytest.approx(math.sqrt(2 * 0.025**2))
    assert describe(ev.cases, "dice", cls="x")["mean"] == pytest.approx(0.6)
    report = split_report(ev, resamples=200)
    assert set(report["metrics"]["dice"]["per_class"]) == {"x", "y"}


def test_rank_then_aggregate_by_hand() -> None:
    evs = {
        "t1": _ev({"a": {"x": 0.9}, "b": {"x": 0.5}}),
        "t2": _ev({"a": {"x": 0.8}, "b": {"x": 0.5}}),
        "t3": _ev({"a": {"x": None}, "b": {"x": 0.7}, "extra": {"x": 1.0}}),
    }
    # case a: t1 1, t2 2, t3 3 (undefined ranks last); case b: t3 1, t1 and t2 tie at 2.5
    assert rank_then_aggregate(evs) == [("t1", 1.75), ("t3", 2.0), ("t2", 2.25)]
    hd = {"t1": _ev({"a": {"x": 3.0}}, metric="hd95"), "t2": _ev({"a": {"x": 1.0}}, metric="hd95")}
    assert rank_then_aggregate(hd, "hd95") == [("t2", 1.0), ("t1", 2.0)]  # lower is better
    with pytest.raises(SpecError, match="share no evaluated case"):
        rank_then_aggregate({"t1": _ev({"a": {"x": 1.0}}), "t2": _ev({"b": {"x": 1.0}})})


def test_domain_summary() -> None:
    sites = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C"}
    ev = _ev(
        {"a1": {"x": 0.9}, "a2": {"x": 0.8}, "b1": {"x": 0.7}, "c1": {"x": 0.4}, "c2": {"x": 0.6}}, sites
    )
    manifest = DatasetManifest(
        name="d",
        checksum="0" * 64,
        channel_names={"0": "CT"},
        labels={"background": 0, "x": 1},
        train_cases=["t1", "t2"],
        eval_cases=[],
        sites={"t1": "A", "t2": "B", **sites},
    )
    assert training_sites(manifest) == {"A", "B"}
    out = domain_summary(ev, training_sites(manifest), resamples=500)
    assert out["unseen_sites"] == ["C"] and out["n_in_domain"] == 3 and out["n_out_of_domain"] == 2
    dice = out["metrics"]["dice"]
    assert dice["in_domain"]["mean"] == pytest.approx(0.8) and dice["out_of_domain"]["mean"] == pytest.approx(
        0.5
    )
    assert dice["gap"] == pytest.approx(0.3)
