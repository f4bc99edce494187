"""Replay trials from a table of recorded outcomes (`executor: table`).

The table holds, per config and seed, the per-case objective on the evaluation split (and
optionally the test split) of real or simulated runs. Campaigns on a table are
deterministic and need no sandbox: tests use them, and planners are benchmarked on them.

Format (JSON):
    {"schema": "medloop.replay/1",
     "dataset": {DatasetManifest fields},  "fingerprint": {name: number},
     "metric": "dice",  "factors": ["loss", "lr", ...],
     "outcomes": [{"config": {factor: value}, "seed": 0,
                   "eval": {case: value}, "test": {case: value}}]}
Config fields not listed in `factors` are ignored when matching.

A table may record fewer seeds than a campaign asks for. A trial whose config is recorded
but whose seed is not is answered from the table's noise model (docs/replay.md): the
config's per-case means shifted by a run-level residual that is drawn deterministically
(from the table's hash, the config and the seed) from the pooled within-config residuals
of the recorded runs. A config the table does not record still fails the trial.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medloop.core.errors import SpecError
from medloop.core.ids import sha256_hex
from medloop.core.records import (
    CaseEvaluation,
    DatasetManifest,
    SplitEvaluation,
    Trial,
    TrialResult,
    TrialSpec,
)
from medloop.core.specs import CampaignSpec, Scalar, TrialConfig
from medloop.core.store import Store
from medloop.engine.base import FINAL_STATUSES, PreparedDataset, TrialCallback, TrialRequest, aggregate
from medloop.engine.efficiency import violations
from medloop.sandbox.base import EventSink


class ReplayOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    config: dict[str, Scalar]
    seed: int
    eval: dict[str, float]
    test: dict[str, float] = Field(default_factory=dict)
    efficiency: dict[str, float] = Field(
        default_factory=dict,
        description="Recorded cost figures of the run (e.g. inference_s_per_case_max), for constraints",
    )


class ReplayTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: str = Field(alias="schema", default="medloop.replay/1")
    dataset: DatasetManifest
    fingerprint: dict[str, float] = Field(default_factory=dict)
    metric: str = "dice"
    factors: list[str]
    outcomes: list[ReplayOutcome]


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def config_signature(config: dict[str, Any], factors: Sequence[str]) -> tuple[Any, ...]:
    return tuple(_norm(config.get(f)) for f in factors)


def load_table(path: Path) -> ReplayTable:
    try:
        return ReplayTable.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"executor.table: {path} does not exist") from None
    except (ValidationError, ValueError) as exc:
        raise SpecError(f"executor.table: {path} is not a replay table: {str(exc)[:300]}") from None


def save_table(table: ReplayTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    data = table.model_dump(mode="json", by_alias=True)
    for outcome in data["outcomes"]:  # tables without cost figures keep their bytes (and hash)
        if not outcome["efficiency"]:
            del outcome["efficiency"]
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _run_mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def _case_means(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for run in runs:
        for case, value in run.items():
            sums.setdefault(case, []).append(value)
    return {case: sum(v) / len(v) for case, v in sums.items()}


class NoiseModel:
    """Draws outcomes for seeds a table does not record (see docs/replay.md).

    A recorded run's residual is its mean over cases minus the mean of its config's runs,
    scaled by sqrt(n / (n - 1)) for a config with n recorded seeds (so the pooled residuals
    have the within-config variance, not the smaller variance around a sample mean). A drawn
    run is the config's per-case means plus one pooled residual, the same shift for every
    case, with the eval and test residuals of one recorded run kept together. The pick is a
    hash of (table hash, config, seed): the same trial always gets the same outcome."""

    def __init__(self, table: ReplayTable, table_hash: str) -> None:
        self.table_hash = table_hash
        groups: dict[tuple[Any, ...], list[ReplayOutcome]] = {}
        for o in table.outcomes:
            groups.setdefault(config_signature(o.config, table.factors), []).append(o)
        self._means = {
            sig: (_case_means([o.eval for o in runs]), _case_means([o.test for o in runs]))
            for sig, runs in groups.items()
        }
        self._efficiency = {sig: runs[0].efficiency for sig, runs in groups.items()}
        pool: list[tuple[float, float]] = []
        for runs in groups.values():
            n = len(runs)
            if n < 2:
                continue
            scale = math.sqrt(n / (n - 1))
            eval_mean = sum(_run_mean(o.eval) for o in runs) / n
            test_mean = sum(_run_mean(o.test) for o in runs) / n
            pool.extend(
                (scale * (_run_mean(o.eval) - eval_mean), scale * (_run_mean(o.test) - test_mean))
                for o in runs
            )
        self._pool = pool
        values = [v for o in table.outcomes for part in (o.eval, o.test) for v in part.values()]
        self._low, self._high = (min(values), max(values)) if values else (0.0, 0.0)

    def draw(self, config: dict[str, Scalar], sig: tuple[Any, ...], seed: int) -> ReplayOutcome | str:
        """The drawn outcome of `config` at `seed`, or why there is none."""
        means = self._means.get(sig)
        if means is None:
            return "the table records no run of this config"
        if not self._pool:
            return "the table records one seed per config, so it has no noise model to draw from"
        pick = int(sha256_hex(f"{self.table_hash}|{sig!r}|{seed}")[:15], 16) % len(self._pool)
        shift_eval, shift_test = self._pool[pick]

        def shifted(values: dict[str, float], shift: float) -> dict[str, float]:
            return {c: min(self._high, max(self._low, v + shift)) for c, v in values.items()}

        return ReplayOutcome(
            config=config,
            seed=seed,
            eval=shifted(means[0], shift_eval),
            test=shifted(means[1], shift_test),
            efficiency=self._efficiency.get(sig, {}),
        )


class _Loaded:
    """A parsed table with its lookup index and (once needed) its noise model."""

    def __init__(self, path: Path) -> None:
        self.table = load_table(path)
        self.table_hash = sha256_hex(path.read_bytes())[:16]
        self.index = {
            (config_signature(o.config, self.table.factors), o.seed): o for o in self.table.outcomes
        }
        self._noise: NoiseModel | None = None

    @property
    def noise(self) -> NoiseModel:
        if self._noise is None:
            self._noise = NoiseModel(self.table, self.table_hash)
        return self._noise


# Parsing a large table (150,000 runs) takes seconds; campaigns replayed one after another
# on the same unchanged file share one parse. Keyed by path, size and modification time.
_LOADED: dict[tuple[str, int, int], _Loaded] = {}
_LOADED_MAX = 2


def _loaded(path: Path) -> _Loaded:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SpecError(f"executor.table: {path} does not exist") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _LOADED.get(key)
    if hit is None:
        hit = _Loaded(path)
        while len(_LOADED) >= _LOADED_MAX:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = hit
    return hit


def loaded_table(path: Path) -> ReplayTable:
    """`load_table`, shared with the replay executor's parse of the same unchanged file."""
    return _loaded(path).table


class ReplayTrials:
    """A TrialService whose trials are looked up, not run."""

    def __init__(self, store: Store, spec: CampaignSpec, *, table: Path) -> None:
        self.store = store
        self.spec = spec
        self._loaded = _loaded(table)
        self.table = self._loaded.table
        self.table_hash = self._loaded.table_hash
        self._index = self._loaded.index
        self._dataset = PreparedDataset(
            path=table.resolve().parent,
            manifest=self.table.dataset,
            staged={},
            fingerprint=self.table.fingerprint,
        )

    @property
    def dataset(self) -> PreparedDataset:
        return self._dataset

    def spec_for(self, config: TrialConfig, seed: int, *, max_seconds: float | None = None) -> TrialSpec:
        return TrialSpec(
            task=config.task, dataset=self.table.dataset, config=config, seed=seed, max_seconds=max_seconds
        )

    def close(self) -> None:
        return None

    def _evaluation(self, split: str, values: dict[str, float]) -> SplitEvaluation:
        sites = self.table.dataset.sites
        cases = [
            CaseEvaluation(case=c, site=sites.get(c), metrics={self.table.metric: {"foreground": v}})
            for c, v in sorted(values.items())
        ]
        mean = aggregate(list(values.values()), "mean")
        return SplitEvaluation(
            split=split,
            cases=cases,
            summary={self.table.metric: mean},
            implementation=f"replay:{self.table_hash}",
        )

    def lookup(self, spec: TrialSpec) -> ReplayOutcome | None:
        """The recorded outcome of this config and seed, else one drawn from the noise model,
        else None (the config is not in the table)."""
        outcome = self.draw(spec)
        return outcome if isinstance(outcome, ReplayOutcome) else None

    def draw(self, spec: TrialSpec) -> ReplayOutcome | str:
        """Like `lookup`, but says why there is no outcome."""
        # Campaigns offset their seeds by a multiple of 10,000 (agents/seeds.py); the table
        # records the role-and-index part.
        sig = config_signature(spec.config.model_dump(), self.table.factors)
        seed = spec.seed % 10_000
        recorded = self._index.get((sig, seed))
        if recorded is not None:
            return recorded
        config = dict(zip(self.table.factors, sig, strict=True))
        return self._loaded.noise.draw(config, sig, seed)

    def recorded(self, spec: TrialSpec) -> bool:
        sig = config_signature(spec.config.model_dump(), self.table.factors)
        return (sig, spec.seed % 10_000) in self._index

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list[Trial]:
        out = []
        for req in requests:
            self.store.trials.put(
                Trial(
                    id=req.trial_id,
                    campaign_id=campaign_id,
                    hypothesis_id=req.hypothesis_id,
                    arm=req.arm,
                    spec=req.spec,
                    spec_hash=req.spec.spec_hash(),
                )
            )
            trial = self.store.trials.get(req.trial_id)
            if trial.status not in FINAL_STATUSES:
                outcome = self.draw(req.spec)
                if isinstance(outcome, str):
                    wanted = config_signature(req.spec.config.model_dump(), self.table.factors)
                    result = TrialResult(
                        trial_id=req.trial_id,
                        spec_hash=trial.spec_hash,
                        status="failed",
                        error=f"no recorded outcome for {dict(zip(self.table.factors, wanted, strict=True))} "
                        f"seed {req.spec.seed}: {outcome}",
                    )
                else:
                    evaluation = self._evaluation("eval", outcome.eval)
                    result = TrialResult(
                        trial_id=req.trial_id,
                        spec_hash=trial.spec_hash,
                        status="succeeded",
                        objective=aggregate(list(outcome.eval.values()), self.spec.objective.aggregation),
                        evaluations={"eval": evaluation},
                        efficiency={
                            **outcome.efficiency,
                            "replay_table": self.table_hash,
                            "replay_seed": "recorded" if self.recorded(req.spec) else "drawn",
                        },
                    )
                    if self.spec.objective.constraints:
                        broken = violations(result, self.spec.objective)
                        result = result.model_copy(
                            update={"efficiency": {**result.efficiency, "constraint_violations": broken}}
                        )
                trial = self.store.trials.set_result(req.trial_id, result)
                if on_trial:
                    on_trial(trial)
            out.append(trial)
        return out

    def evaluate_test(self, trial: Trial) -> SplitEvaluation | None:
        outcome = self.lookup(trial.spec)
        if outcome is None or not outcome.test or trial.result is None or trial.status != "succeeded":
            return None  # only a run that finished has test predictions to score
        evaluation = self._evaluation("test", outcome.test)
        updated = trial.result.model_copy(
            update={"evaluations": {**trial.result.evaluations, "test": evaluation}}
        )
        self.store.trials.set_result(trial.id, updated)
        return evaluation


def synthetic_table(
    *,
    space: dict[str, list[Scalar]],
    effect: Any,
    n_cases: int = 24,
    seeds: Sequence[int] = (0, 1, 2, 1000, 1001, 1002, 2000, 2001, 2002),
    case_sd: float = 0.05,
    seed_sd: float = 0.01,
    noise_sd: float = 0.01,
    base: float = 0.7,
    rng_seed: int = 0,
    name: str = "Dataset999_Replay",
) -> ReplayTable:
    """A table over the full grid `space` with per-case values
    base + case effect + `effect(config)` + seed effect + noise (clipped to [0, 1]).
    `effect` maps a config dict to the true mean effect, so tests and calibration runs
    can plant known effects (or none)."""
    import itertools

    import numpy as np

    rng = np.random.default_rng(rng_seed)
    cases = [f"case_{i:03d}" for i in range(n_cases)]
    test_cases = [f"test_{i:03d}" for i in range(n_cases)]
    case_fx = dict(zip(cases + test_cases, rng.normal(0, case_sd, 2 * n_cases), strict=True))
    names = list(space)
    outcomes = []
    # A seed shifts every case of a run; most of the shift is shared by all configs run
    # with that seed (same initialisation and data order), a third is config-specific.
    shared = {seed: rng.normal(0, seed_sd) for seed in seeds}
    for values in itertools.product(*(space[n] for n in names)):
        config = dict(zip(names, values, strict=True))
        mu = base + float(effect(config))
        for seed in seeds:
            seed_fx = shared[seed] + rng.normal(0, seed_sd / 3)

            def draw(ids: list[str], mu: float = mu, seed_fx: float = seed_fx) -> dict[str, float]:
                noise = rng.normal(0, noise_sd, len(ids))
                return {
                    c: float(np.clip(mu + case_fx[c] + seed_fx + e, 0, 1))
                    for c, e in zip(ids, noise, strict=True)
                }

            outcomes.append(ReplayOutcome(config=config, seed=seed, eval=draw(cases), test=draw(test_cases)))
    manifest = DatasetManifest(
        name=name,
        checksum=sha256_hex(name),
        channel_names={"0": "CT"},
        labels={"background": 0, "organ": 1},
        train_cases=[],
        eval_cases=cases,
        test_cases=test_cases,
        sites={c: ("site_a" if i % 2 else "site_b") for i, c in enumerate(cases + test_cases)},
    )
    return ReplayTable(
        schema="medloop.replay/1",
        dataset=manifest,
        fingerprint={"n_cases": float(n_cases)},
        factors=names,
        outcomes=outcomes,
    )
