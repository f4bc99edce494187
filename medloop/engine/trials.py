"""Run trials end to end on the host: spec -> sandboxed job -> metrics recomputed from the
job's raw predictions against labels it never saw -> a TrialResult in the store.

The job's own numbers are never trusted: the host recomputes everything, and a job whose
reported internal-validation metrics disagree with the recomputation is `tampered`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from medloop.core.errors import DatasetError, DiskFull
from medloop.core.records import (
    JobLimits,
    JobOutcome,
    JobResult,
    JobSpec,
    SplitEvaluation,
    Trial,
    TrialResult,
    TrialSpec,
)
from medloop.core.specs import (
    CampaignSpec,
    ClassifyConfig,
    DatasetRef,
    Objective,
    PromptableConfig,
    SandboxSpec,
    SegConfig,
    TrialConfig,
)
from medloop.core.store import Store
from medloop.engine.base import (
    FINAL_STATUSES,
    PreparedDataset,
    TrialCallback,
    TrialRequest,
    aggregate,
    case_objective,
)
from medloop.engine.causes import is_disk_full, job_failure
from medloop.engine.code import CodeStore
from medloop.engine.efficiency import COST_METRIC, HOST_FIGURES, host_figures, violations, with_cost_per_case
from medloop.engine.outputs import OutputTree, UnsafeOutput
from medloop.engine.smoke import CodeGate
from medloop.engine.tasks import ScoringContext, family
from medloop.engine.tasks.pretrain import check_registered, verify_init
from medloop.experiments.dataset.checkpoints import resolve_init, stage_checkpoint
from medloop.sandbox.base import EventSink, Executor, job_key, limits_for

JOB_COMMAND = ["python", "-m", "medloop.experiments", "run", "--spec", "/in/spec.json", "--out", "/out"]
# Reported vs recomputed Dice may differ by resampling/rounding; anything beyond is tampering.
TAMPER_TOLERANCE = 1e-3
# How often a trial that a full disk broke runs again (on resume) before its failure stands.
DISK_FULL_RERUNS = 3


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    Path(tmp).chmod(0o644)  # mkstemp makes it 0600; a container's non-root user must read it
    Path(tmp).replace(path)


def prepare_dataset(ref: DatasetRef, staging_dir: Path, task: str = "segmentation") -> PreparedDataset:
    """Split the dataset (by case, seeded) and stage read-only job inputs for `task`."""
    return family(task).prepare(ref, staging_dir)


class SandboxTrials:
    """Trials of one campaign run as sandboxed jobs, scored on the host."""

    def __init__(
        self,
        store: Store,
        spec: CampaignSpec,
        *,
        executor: Executor,
        workspace: Path,
        staging_dir: Path,
    ) -> None:
        self.store = store
        self.executor = executor
        self.sandbox: SandboxSpec = spec.sandbox
        self.objective: Objective = spec.objective
        self.task = spec.task
        self.workspace = workspace
        self._ref = spec.dataset
        self._staging_dir = staging_dir
        self._dataset: PreparedDataset | None = None
        self._init_folders: dict[str, Path] = {}
        self.code = CodeStore(workspace / "code")
        self.gate = CodeGate(store, self.code, spec.sandbox, spec.code)

    @property
    def dataset(self) -> PreparedDataset:
        if self._dataset is None:
            self._dataset = prepare_dataset(self._ref, self._staging_dir, self.task)
        return self._dataset

    def spec_for(self, config: TrialConfig, seed: int, *, max_seconds: float | None = None) -> TrialSpec:
        init: dict[str, Any] = {}
        if isinstance(config, SegConfig | PromptableConfig | ClassifyConfig) and config.init != "scratch":
            # Transfer: the parent checkpoint (an earlier trial's, or a file) is staged
            # content-addressed and mounted read-only as the job input `init`.
            with contextlib.ExitStack() as stack:
                resolved = resolve_init(config.init, lambda tid: self._trial_checkpoint(tid, stack))
                if resolved is not None:
                    n_channels = len(self.dataset.manifest.channel_names)
                    verify_init(resolved[0], config, in_channels=n_channels)  # provenance, network
                    staged = stage_checkpoint(resolved[0], resolved[1], self._staging_dir)
                    self._init_folders[staged.relative] = staged.folder
                    init = {"init_checkpoint": staged.relative, "provenance": dict(staged.provenance)}
        return TrialSpec(
            task=config.task,
            dataset=self.dataset.manifest,
            config=config,
            seed=seed,
            max_seconds=max_seconds,
            **init,
        )

    def _outputs(self, out_dir: Path) -> OutputTree:
        """A finished job's output, read without following links (see engine.outputs)."""
        return OutputTree(
            out_dir,
            self.workspace / "scratch",
            max_entries=self.sandbox.output_entries,
            max_bytes=self.sandbox.output_limit_mb << 20,
        )

    def _trial_checkpoint(self, trial_id: str, stack: contextlib.ExitStack) -> Path | None:
        """A private copy of the checkpoint a finished trial kept (best, else last); it
        lives until `stack` closes. A link in place of a checkpoint is refused
        (UnsafeOutput), so no host file behind it can become a later job's input."""
        trial = self.store.trials.get(trial_id)
        job = trial.result.job if trial.result else None
        if job is None or trial.status != "succeeded":
            return None
        outputs = stack.enter_context(self._outputs(job.out_dir))
        for name in ("pretrained.safetensors", "best.safetensors", "last.safetensors"):
            copy = outputs.file(f"checkpoints/{name}")
            if copy is not None:
                check_registered(
                    trial.result.evaluations.get("eval") if trial.result else None, copy, trial_id
                )
                return copy
        return None

    @property
    def metrics(self) -> tuple[str, ...]:
        """What the host recomputes for every scored split (the family decides)."""
        return family(self.task).metrics(self.objective)

    def _scoring(self, job: JobResult | None = None) -> ScoringContext:
        jobs = _FollowUps(self, job) if job is not None else None
        return ScoringContext(
            dataset=self.dataset, objective=self.objective, workspace=self.workspace, jobs=jobs
        )

    def _restage(self, spec: TrialSpec) -> Path:
        """The staged parent checkpoint of a spec made by an earlier process (a resume)."""
        sha = str(spec.provenance.get("init_sha256", ""))
        folder = self._staging_dir / f"init-{sha[:16]}"
        if not sha or not folder.is_dir():
            raise DatasetError(
                f"trial spec {spec.spec_hash()[:12]}: its init checkpoint is no longer staged",
                hint="re-run from a config whose init trial still has its checkpoint",
            )
        return folder

    def close(self) -> None:
        self.executor.close()

    # ------------------------------------------------------------ running

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list[Trial]:
        """Run what is not done yet; reuse finished trials (this campaign's or, by spec
        hash, any campaign's). Returns the trials in request order."""
        to_run: list[tuple[TrialRequest, JobSpec]] = []
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
            current = self.store.trials.get(req.trial_id)
            if current.status in FINAL_STATUSES and _rerun_of(current) is None:
                continue
            previous = self.store.trials.find(current.spec_hash)
            if previous is not None and previous.result is not None and previous.id != current.id:
                reused = previous.result.model_copy(
                    update={"trial_id": current.id, "reused_from": previous.result.reused_from or previous.id}
                )
                done = self.store.trials.set_result(current.id, reused)
                if on_trial:
                    on_trial(done)
                continue
            refused = self.gate.refused(req.spec)
            if refused is not None:
                done = self.store.trials.set_result(
                    current.id,
                    TrialResult(
                        trial_id=current.id, spec_hash=current.spec_hash, status="failed", error=refused
                    ),
                )
                if on_trial:
                    on_trial(done)
                continue
            to_run.append((req, self._job_for(campaign_id, req)))
        to_run = self._smoke(campaign_id, to_run, on_event, on_trial)
        if to_run:
            for req, _ in to_run:
                self.store.trials.set_status(req.trial_id, "running")
            try:
                results = self.executor.run([job for _, job in to_run], on_event=on_event)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                self._disk_full([req for req, _ in to_run], exc)
            full: list[str] = []
            for (req, _), job_result in zip(to_run, results, strict=True):
                result = self.collect(req.trial_id, req.spec, job_result)
                done = self.store.trials.set_result(req.trial_id, result)
                if is_disk_full(result.error):
                    full.append(f"{req.trial_id}: {result.error}")
                if on_trial:
                    on_trial(done)
            if full:
                # Not a result about the hypothesis: stop, and run these again on resume.
                raise DiskFull(
                    f"the disk filled up under {len(full)} trial(s) ({full[0]})",
                    hint="free disk space, then `medloop campaign resume` re-runs them",
                )
        return [self.store.trials.get(req.trial_id) for req in requests]

    def _disk_full(self, requests: Sequence[TrialRequest], exc: OSError) -> NoReturn:
        """The host could not write (its disk is full) while these trials ran: record that
        on each (where the store still can), so resume runs them again, and stop."""
        why = f"no space left on device ({exc.filename or exc.strerror})"
        for req in requests:
            failed = TrialResult(
                trial_id=req.trial_id, spec_hash=req.spec.spec_hash(), status="failed", error=why
            )
            with contextlib.suppress(Exception):  # the store may be on the full disk too
                self.store.trials.set_result(req.trial_id, failed)
        raise DiskFull(
            f"the disk filled up while {len(requests)} trial(s) ran: {why}",
            hint="free disk space, then `medloop campaign resume` re-runs them",
        ) from None

    def _limits(self, smoke: bool) -> JobLimits:
        """The campaign's job limits; a smoke trial is killed at the (shorter) smoke limit,
        enforced by the host like every timeout."""
        limits = limits_for(self.sandbox)
        if smoke:
            limits = limits.model_copy(
                update={"timeout_s": min(limits.timeout_s, self.gate.code.smoke_timeout)}
            )
        return limits

    def _job_for(self, campaign_id: str, req: TrialRequest, *, smoke: bool = False) -> JobSpec:
        sandbox = self.sandbox
        spec_hash = req.spec.spec_hash()
        spec_path = self.workspace / "specs" / f"{spec_hash}.json"
        _write_atomic(spec_path, req.spec.model_dump_json(indent=2))
        staged = self.dataset.staged
        threads = str(req.spec.config.num_threads)
        inputs: dict[str, Path] = {"spec.json": spec_path, **staged}
        if req.spec.init_checkpoint:
            inputs["init"] = self._init_folders.get(req.spec.init_checkpoint) or self._restage(req.spec)
        inputs.update(family(req.spec.task).extra_inputs(req.spec))
        code = self.gate.sources(req.spec)
        if code:  # code hypotheses, read-only at /in/code/<sha256>.py
            inputs["code"] = self.code.stage(sorted(code), self._staging_dir, code)
        rerun = None if smoke else _rerun_of(self.store.trials.get(req.trial_id))
        return JobSpec(
            # Deterministic: after a crash the scheduler re-attaches to (or collects) the
            # job with this key instead of running it twice. A re-run after a full disk
            # gets its own key (the broken job keeps its record).
            key=job_key(campaign_id, spec_hash)
            + (f".rerun{rerun}" if rerun else "")
            + (".smoke" if smoke else ""),
            command=list(JOB_COMMAND),
            inputs=inputs,
            env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
            limits=self._limits(smoke),
            image=sandbox.image,
            labels={
                "medloop.campaign": campaign_id,
                "medloop.trial": req.trial_id,
                "medloop.spec_hash": spec_hash,
            },
        )

    def _smoke(
        self,
        campaign_id: str,
        to_run: list[tuple[TrialRequest, JobSpec]],
        on_event: EventSink | None,
        on_trial: TrialCallback | None,
    ) -> list[tuple[TrialRequest, JobSpec]]:
        """Smoke-test new code (engine/smoke.py); the trials whose code failed it fail
        with the reason instead of running. Returns the trials left to run."""

        def job_for(spec: TrialSpec) -> JobSpec:
            return self._job_for(
                campaign_id, TrialRequest(f"smoke-{spec.spec_hash()[:16]}", None, "control", spec), smoke=True
            )

        def run(jobs: list[JobSpec]) -> list[JobResult]:
            return list(self.executor.run(jobs, on_event=on_event))

        outcomes = self.gate.smoke([req.spec for req, _ in to_run], job_for, run)
        if not any(not o.passed for o in outcomes):
            return to_run
        left = []
        for req, job in to_run:
            refused = self.gate.refused(req.spec)
            if refused is None:
                left.append((req, job))
                continue
            done = self.store.trials.set_result(
                req.trial_id,
                TrialResult(
                    trial_id=req.trial_id, spec_hash=req.spec.spec_hash(), status="failed", error=refused
                ),
            )
            if on_trial:
                on_trial(done)
        return left

    # ------------------------------------------------------------ evaluation

    def collect(self, trial_id: str, spec: TrialSpec, job: JobResult) -> TrialResult:
        """Turn a finished job into a TrialResult with host-recomputed metrics."""
        prov = job.provenance.model_copy(
            update={
                "spec_hash": spec.spec_hash(),
                "dataset_checksum": spec.dataset.checksum,
                "seed": spec.seed,
            }
        )
        job = job.model_copy(update={"provenance": prov})
        base = {"trial_id": trial_id, "spec_hash": spec.spec_hash(), "job": job}
        if job.status != "succeeded":
            return TrialResult(status=job.status, error=job_failure(job), **base)
        with self._outputs(job.out_dir) as outputs:
            try:
                outputs.check()
                outcome = JobOutcome.model_validate_json(outputs.read_text("result.json"))
            except UnsafeOutput as exc:
                return TrialResult(status="failed", error=f"unsafe job output: {exc.message}", **base)
            except (OSError, ValidationError, ValueError) as exc:
                return TrialResult(status="failed", error=f"result.json missing or invalid: {exc}", **base)
            if outcome.status != "completed":
                return TrialResult(status="failed", error=outcome.error or "job reported failure", **base)

            fam, ctx = family(spec.task), self._scoring(job)
            try:
                evaluation = fam.score(ctx, trial_id, spec, outputs, "eval")
                gap = fam.tamper_gap(ctx, spec, outputs, outcome)
            except UnsafeOutput as exc:
                return TrialResult(status="failed", error=f"unsafe job output: {exc.message}", **base)
            except DatasetError as exc:
                # Outputs the host cannot score are the trial's outcome, never a campaign crash.
                return TrialResult(status="failed", error=exc.message, **base)
        if evaluation is None:
            return TrialResult(status="failed", error="the job wrote no evaluation predictions", **base)
        measured = host_figures(job, evaluation)
        if self.objective.metric == COST_METRIC:
            evaluation = with_cost_per_case(evaluation, measured["job_hours"])
        per_case = case_objective(evaluation, self.objective.metric)
        value = aggregate(list(per_case.values()), self.objective.aggregation)
        tampered = gap is not None and gap > TAMPER_TOLERANCE
        reported = {k: v for k, v in outcome.efficiency.items() if k not in HOST_FIGURES}
        result = TrialResult(
            status="tampered" if tampered else "succeeded",
            objective=value,
            evaluations={"eval": evaluation},
            tamper_gap=gap,
            history=outcome.history,
            efficiency={**reported, **measured},
            error="reported metrics differ from the host's recomputation" if tampered else None,
            **base,
        )
        if not self.objective.constraints:
            return result
        broken = violations(result, self.objective)
        return result.model_copy(
            update={"efficiency": {**result.efficiency, "constraint_violations": broken}}
        )

    def evaluate_test(self, trial: Trial) -> SplitEvaluation | None:
        """Score a finished trial's test-split predictions (used once, at campaign end).

        None when there is nothing to score; when the predictions cannot be scored, the
        reason is recorded on the trial (`result.split_errors["test"]`) for the report."""
        if trial.result is None or trial.result.job is None or trial.status != "succeeded":
            return None
        if "test" in trial.result.evaluations:
            cached: SplitEvaluation = trial.result.evaluations["test"]
            return cached
        try:
            with self._outputs(trial.result.job.out_dir) as outputs:
                evaluation = family(trial.spec.task).score(
                    self._scoring(trial.result.job), trial.id, trial.spec, outputs, "test"
                )
        except (DatasetError, UnsafeOutput) as exc:
            self._split_error(trial.id, trial.result, "test", exc.message)
            return None
        if evaluation is None:
            if trial.spec.dataset.test_cases:  # a test split exists, the job left it unscored
                self._split_error(trial.id, trial.result, "test", "the job wrote no test-split predictions")
            return None
        updated = trial.result.model_copy(
            update={"evaluations": {**trial.result.evaluations, "test": evaluation}}
        )
        self.store.trials.set_result(trial.id, updated)
        return evaluation

    def _split_error(self, trial_id: str, result: TrialResult, split: str, why: str) -> None:
        errors = {**result.split_errors, split: why}
        self.store.trials.set_result(trial_id, result.model_copy(update={"split_errors": errors}))


class _FollowUps:
    """Follow-up jobs of one trial (engine.tasks.base.FollowUpJobs): the campaign's
    executor, sandbox limits and image; keys extend the trial job's key."""

    def __init__(self, trials: SandboxTrials, job: JobResult) -> None:
        self._trials, self._key = trials, job.key
        self.staging_dir = trials._staging_dir

    def run(self, suffix: str, command: list[str], inputs: dict[str, Path], threads: int) -> JobResult:
        sandbox = self._trials.sandbox
        job = JobSpec(
            key=f"{self._key}.{suffix}",
            command=list(command),
            inputs=inputs,
            env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
            limits=limits_for(sandbox),
            image=sandbox.image,
            labels={"medloop.followup": suffix},
        )
        (result,) = self._trials.executor.run([job])
        return result

    def outputs(self, result: JobResult) -> OutputTree:
        return self._trials._outputs(result.out_dir)


def _rerun_of(trial: Trial) -> int | None:
    """The re-run number due to a trial that a full disk broke (bounded), else None."""
    result = trial.result
    if result is None or not is_disk_full(result.error):
        return None
    if result.job is None:  # the host's write failed: no job result was kept
        return 1
    _, _, tail = result.job.key.rpartition(".rerun")
    done = int(tail) if tail.isdigit() else 0
    return done + 1 if done < DISK_FULL_RERUNS else None


def describe(trial: Trial) -> str:
    """One line for logs: config factors that matter, seed, status, objective."""
    cfg = trial.spec.config.model_dump(exclude={"task", "num_threads", "internal_val_fraction"})
    obj = f"{trial.result.objective:.4f}" if trial.result and trial.result.objective is not None else "-"
    return f"{trial.id[:12]} seed={trial.spec.seed} {trial.status} obj={obj} {json.dumps(cfg)}"
