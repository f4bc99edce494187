"""Model-based proposals for the numeric factors (Optuna's TPE over this campaign's runs).

One-factor moves walk a numeric factor one grid step per cycle; TPE can jump to the
promising region once a few configs have been measured. Categorical factors stay at the
incumbent's values so the hypothesis remains a change of numeric factors only, and every
suggestion is snapped to the planners' grid so that configs are comparable across
campaigns (and present in replay tables).
"""

from __future__ import annotations

from typing import Any

from medloop.agents.base import PlanningContext
from medloop.agents.space import active, apply_changes, config_key, grid
from medloop.core.records import FactorChange
from medloop.core.specs import FloatRange, IntRange

MIN_OBSERVATIONS = 3


def observations(ctx: PlanningContext) -> list[tuple[dict[str, Any], float]]:
    """(config, mean objective) of every config measured in this campaign."""
    return [(cfg, value) for cfg, value in ctx.measured if value is not None]


def suggest_numeric(ctx: PlanningContext, *, seed: int, tries: int = 24) -> list[FactorChange] | None:
    """A multi-factor numeric change of the incumbent, or None (too few runs, no numeric
    factors, or nothing untested)."""
    numeric = {
        name: f
        for name, f in ctx.spec.search_space.items()
        if isinstance(f, FloatRange | IntRange) and active(f, ctx.incumbent)
    }
    obs = observations(ctx)
    if not numeric or len(obs) < MIN_OBSERVATIONS:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {
        name: (
            optuna.distributions.FloatDistribution(float(f.low), float(f.high), log=f.log)
            if isinstance(f, FloatRange)
            else optuna.distributions.IntDistribution(int(f.low), int(f.high), log=f.log)
        )
        for name, f in numeric.items()
    }
    maximize = ctx.spec.objective.direction == "maximize"
    study = optuna.create_study(
        direction="maximize" if maximize else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=MIN_OBSERVATIONS),
    )
    fixed = {k: v for k, v in ctx.incumbent.items() if k not in numeric}
    for cfg, value in obs:
        # Only runs that share the incumbent's other factors inform this conditional model.
        if any(cfg.get(k) != v for k, v in fixed.items() if k in ctx.spec.search_space):
            continue
        params = {n: cfg[n] for n in numeric if n in cfg}
        if len(params) != len(numeric) or not all(
            dists[n]._contains(dists[n].to_internal_repr(v)) for n, v in params.items()
        ):
            continue
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    if len(study.trials) < MIN_OBSERVATIONS:
        return None
    tested = {config_key(c) for c in ctx.tested_configs}
    for _ in range(tries):
        trial = study.ask(dists)
        changes = []
        for name, factor in numeric.items():
            wanted = float(trial.params[name])
            snapped = min(grid(factor), key=lambda p: abs(float(p) - wanted))
            if snapped != ctx.incumbent.get(name):
                changes.append(
                    FactorChange(factor=name, from_value=ctx.incumbent.get(name), to_value=snapped)
                )
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        if changes and config_key(apply_changes(ctx.incumbent, changes)) not in tested:
            return changes
    return None
