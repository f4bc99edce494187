"""Types shared by the tool library and its callers (the agent, adapters): light imports only."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medloop.core.ids import content_id
from medloop.core.records import Arm, DatasetManifest, SplitEvaluation, Trial, TrialSpec
from medloop.core.specs import TrialConfig
from medloop.sandbox.base import EventSink

FINAL_STATUSES = {"succeeded", "failed", "oom", "timed_out", "cancelled", "quota_exceeded", "tampered"}


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset ready for trials: its manifest (splits) and read-only staged job inputs."""

    path: Path
    manifest: DatasetManifest
    staged: dict[str, Path]
    fingerprint: dict[str, float]


@dataclass(frozen=True)
class TrialRequest:
    trial_id: str
    hypothesis_id: str | None
    arm: Arm
    spec: TrialSpec


TrialCallback = Callable[[Trial], None]


class TrialService(Protocol):
    """Runs one campaign's trials. The sandbox-backed service is the real one; the replay
    service answers from a table of recorded outcomes (tests, planner benchmarks)."""

    @property
    def dataset(self) -> PreparedDataset: ...

    def spec_for(self, config: TrialConfig, seed: int, *, max_seconds: float | None = None) -> TrialSpec: ...

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list[Trial]: ...

    def evaluate_test(self, trial: Trial) -> SplitEvaluation | None: ...

    def close(self) -> None: ...


def trial_id_for(campaign_id: str, spec: TrialSpec) -> str:
    """Deterministic: the same spec in the same campaign is the same trial (shared controls)."""
    return content_id("trl", campaign_id, spec.spec_hash())


def case_objective(evaluation: SplitEvaluation, metric: str) -> dict[str, float]:
    """Per-case foreground mean of `metric` (classes with no value are skipped)."""
    out: dict[str, float] = {}
    for case in evaluation.cases:
        values = [v for v in case.metrics.get(metric, {}).values() if v is not None]
        if values:
            out[case.case] = float(sum(values) / len(values))
    return out


def aggregate(values: Sequence[float], how: str) -> float | None:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return None
    if how == "median":
        mid = len(finite) // 2
        return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
    return sum(finite) / len(finite)
