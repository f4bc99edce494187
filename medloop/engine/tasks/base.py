"""The task-family boundary of the engine: what differs between segmentation, VQA and the
families that come after them (pre-training, promptable segmentation, classification,
audio) when a trial runs on the host.

A family prepares a dataset (split + read-only staged job inputs, labels of held-out
splits kept on the host), names any extra read-only job inputs, and scores a finished
job's raw outputs on a split against labels the job never saw. Everything common (the
job command, result.json validation, objective aggregation, reuse, status) lives in
`engine.trials.SandboxTrials`, which looks families up by the trial spec's `task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medloop.core.records import JobOutcome, JobResult, SplitEvaluation, TrialSpec
from medloop.core.specs import DatasetRef, Objective
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree


class FollowUpJobs(Protocol):
    """Further sandboxed jobs of one trial that a family runs while it scores it (the
    rounds of an interactive evaluation), under the campaign's sandbox and limits. Keys are
    the trial job's key plus `suffix`, so a resumed scoring finds finished rounds again."""

    staging_dir: Path

    def run(self, suffix: str, command: list[str], inputs: dict[str, Path], threads: int) -> JobResult:
        """Run one job to its end (a failed job is a JobResult, not an exception)."""
        ...

    def outputs(self, result: JobResult) -> OutputTree:
        """The job's output, read safely (a context manager, as in SandboxTrials)."""
        ...


@dataclass(frozen=True)
class ScoringContext:
    """What a family needs on the host to score a trial: the prepared dataset, the
    campaign's objective, a workspace folder for per-trial score reports, and (where the
    engine runs sandboxed jobs) a runner for follow-up jobs of the trial."""

    dataset: PreparedDataset
    objective: Objective
    workspace: Path
    jobs: FollowUpJobs | None = None


class TaskFamily(Protocol):
    """One task kind's host-side behaviour. Outcomes are data: a job whose outputs cannot
    be scored raises `DatasetError` from `score`, which the engine records as a failed trial
    with that message (never a crash of the campaign)."""

    name: str

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        """Split the dataset (seeded, by case/subject) and stage read-only job inputs."""
        ...

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        """Further read-only job inputs this trial needs (e.g. local model weights)."""
        ...

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        """The metrics the host recomputes for every scored split (the objective among them)."""
        ...

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        """Recompute the metrics of `split` from the job's raw outputs, read only through
        `outputs` (private snapshots, never the job's own paths); None when the job has
        nothing for that split (e.g. no test cases)."""
        ...

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        """Max |reported - recomputed| over what the job claimed about itself (0 if it
        reported nothing; None when the family's jobs report nothing checkable)."""
        ...
