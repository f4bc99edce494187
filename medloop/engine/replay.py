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
"""

from __future__ import annotations

import json
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
from medloop.sandbox.base import EventSink


class ReplayOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    config: dict[str, Scalar]
    seed: int
    eval: dict[str, float]
    test: dict[str, float] = Field(default_factory=dict)


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
    tmp.write_text(json.dumps(table.model_dump(mode="json", by_alias=True)))
    tmp.replace(path)


class ReplayTrials:
    """A TrialService whose trials are looked up, not run."""

    def __init__(self, store: Store, spec: CampaignSpec, *, table: Path) -> None:
        self.store = store
        self.spec = spec
        self.table = load_table(table)
        self.table_hash = sha256_hex(table.read_bytes())[:16]
        self._index = {
            (config_signature(o.config, self.table.factors), o.seed): o for o in self.table.outcomes
        }
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
        # Campaigns offset their seeds by a multiple of 10,000 (agents/seeds.py); the table
        # records the role-and-index part.
        key = (config_signature(spec.config.model_dump(), self.table.factors), spec.seed % 10_000)
        return self._index.get(key)

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
                outcome = self.lookup(req.spec)
                if outcome is None:
                    wanted = config_signature(req.spec.config.model_dump(), self.table.factors)
                    result = TrialResult(
                        trial_id=req.trial_id,
                        spec_hash=trial.spec_hash,
                        status="failed",
                        error=f"no recorded outcome for {dict(zip(self.table.factors, wanted, strict=True))} "
                        f"seed {req.spec.seed}",
                    )
                else:
                    evaluation = self._evaluation("eval", outcome.eval)
                    result = TrialResult(
                        trial_id=req.trial_id,
                        spec_hash=trial.spec_hash,
                        status="succeeded",
                        objective=aggregate(list(outcome.eval.values()), self.spec.objective.aggregation),
                        evaluations={"eval": evaluation},
                        efficiency={"replay_table": self.table_hash},
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
