"""The model-based proposer: Optuna's TPE over the whole search space, fitted to every run.

Categorical, integer, float and log ranges are Optuna distributions as declared (a float
range is searched as a float range, no grid), conditional factors (`when`) are sampled
define-by-run so a factor exists only where it is active, and a proposal may change any
number of factors at once. Past runs enter the study with `add_trial`, one per run (all
arms, all seeds), so the model sees the seed noise too. Knowledge from related campaigns
enters as enqueued priors: configs the sampler evaluates first, in order of weight.

The study is rebuilt from the campaign's runs at every planning step (runs are the truth,
the study a view of them), sorted by content so the same runs give the same proposals.
"""

from __future__ import annotations

import warnings
from typing import Any

from medloop.agents.space import active, config_key
from medloop.core.specs import Categorical, Direction, Factor, FloatRange, IntRange

# Random proposals before the model takes over. Runs count one by one (a config with 3
# seeds is 3 observations), so a handful of configs is enough.
STARTUP_RUNS = 6
# How many samples one ask may draw before it gives up on finding an untested config.
MAX_DRAWS = 200


def _ordered(space: dict[str, Factor]) -> list[str]:
    """Factors in an order where every `when` condition names an earlier factor (or one
    outside the space, taken from the base config)."""
    done: list[str] = []
    pending = sorted(space)
    while pending:
        ready = [n for n in pending if all(d not in space or d in done for d in (space[n].when or {}))]
        if not ready:  # a cycle of conditions: keep the declared order for the rest
            ready = pending
        done.extend(ready)
        pending = [n for n in pending if n not in ready]
    return done


def _inside(factor: Factor, value: Any) -> bool:
    if isinstance(factor, Categorical):
        return value in factor.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    whole = not isinstance(factor, IntRange) or value == int(value)
    return whole and factor.low <= value <= factor.high


class TpeProposer:
    name = "tpe"

    def __init__(
        self, space: dict[str, Factor], *, direction: Direction, seed: int, startup: int = STARTUP_RUNS
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.seed = seed
        self.order = _ordered(space)
        self._observations: list[tuple[str, int, dict[str, Any], float]] = []
        self._priors: list[tuple[float, str, dict[str, Any]]] = []
        with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental"
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=startup,
                multivariate=True,
                group=True,
                constant_liar=True,
            )
        self.study = optuna.create_study(direction=direction, sampler=sampler)
        self._fitted = False

    # ------------------------------------------------------------ distributions

    def distribution(self, name: str) -> Any:
        import optuna.distributions as d

        f = self.space[name]
        if isinstance(f, Categorical):
            return d.CategoricalDistribution(list(f.choices))
        if isinstance(f, IntRange):
            return d.IntDistribution(int(f.low), int(f.high), log=f.log)
        assert isinstance(f, FloatRange)
        return d.FloatDistribution(float(f.low), float(f.high), log=f.log)

    def _params(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The search-space part of a config, or None when a value lies outside the space
        (a baseline off the declared range is still a run, but not the model's)."""
        out: dict[str, Any] = {}
        for name in self.order:
            f = self.space[name]
            if not active(f, config) or name not in config:
                continue
            value = config[name]
            if not _inside(f, value):
                return None
            out[name] = value
        return out

    def _suggest(self, trial: Any, name: str) -> Any:
        f = self.space[name]
        if isinstance(f, Categorical):
            return trial.suggest_categorical(name, list(f.choices))
        if isinstance(f, IntRange):
            return trial.suggest_int(name, int(f.low), int(f.high), log=f.log)
        return trial.suggest_float(name, float(f.low), float(f.high), log=f.log)

    # ------------------------------------------------------------ the boundary

    def tell(
        self, config: dict[str, Any], value: float, *, seed: int | None = None, fidelity: float = 1.0
    ) -> None:
        params = self._params(config)
        if params is not None and value == value:  # NaN never enters the model
            self._observations.append((config_key(params), seed or 0, params, float(value)))
            self._fitted = False

    def prior(self, config: dict[str, Any], weight: float) -> None:
        params = self._params(config)
        if params is not None and weight > 0:
            self._priors.append((weight, config_key(params), params))

    def _fit(self) -> None:
        import optuna

        if self._fitted:
            return
        for _, _, params, value in sorted(self._observations, key=lambda o: (o[0], o[1], o[3])):
            dists = {n: self.distribution(n) for n in params}
            self.study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        for _, _, params in sorted(self._priors, key=lambda p: (-p[0], p[1])):
            self.study.enqueue_trial(params, skip_if_exists=True)
        self._observations, self._priors = [], []
        self._fitted = True

    def ask(self, n: int, *, base: dict[str, Any], exclude: set[str]) -> list[dict[str, Any]]:
        import optuna

        self._fit()
        out: list[dict[str, Any]] = []
        seen = set(exclude)
        draws = 0
        while len(out) < n and draws < MAX_DRAWS:
            draws += 1
            trial = self.study.ask()
            config = dict(base)
            for name in self.order:
                if not active(self.space[name], config):
                    continue
                config[name] = self._suggest(trial, name)
            key = config_key(config)
            if key in seen:
                # Not an observation: a failed trial is ignored by the sampler's model.
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            seen.add(key)
            out.append(config)  # left running: constant_liar keeps the next ask away from it
        if len(out) < n:
            # The model keeps asking for configs already run (it believes it has converged):
            # the rest are uniform random untested configs, so a budget is never left unused
            # while the space still has configs to try.
            explorer = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.seed))
            for _ in range(MAX_DRAWS):
                if len(out) >= n:
                    break
                trial = explorer.ask()
                config = dict(base)
                for name in self.order:
                    if active(self.space[name], config):
                        config[name] = self._suggest(trial, name)
                key = config_key(config)
                if key not in seen:
                    seen.add(key)
                    out.append(config)
        return out
