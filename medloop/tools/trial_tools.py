"""Trial tools: run_trial (submit, returns handles), trial_status (progress, may wait),
trial_result (host-recomputed metrics and provenance).

Trials a caller submits belong to the caller's workbench: one campaign record per
(caller, dataset, split) that holds them (trials need a campaign), never planned or run
by the agent. A handle is the trial id, which is deterministic (workbench, config, seed):
submitting the same trial twice returns the same handle and runs it once, and a finished
trial with the same spec anywhere in the store is reused instead of trained again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from medloop.core.accounts import ToolJob
from medloop.core.errors import ConflictError, NotFoundError, SpecError
from medloop.core.ids import content_id
from medloop.core.records import Campaign, Trial
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.engine.base import FINAL_STATUSES, TrialRequest, case_objective, trial_id_for
from medloop.tools.common import (
    GPU_HOURS,
    TRIALS,
    Budgeted,
    budget_view,
    confine_init,
    require_budget,
    resolve_path,
)
from medloop.tools.context import ACT, READ, ToolContext
from medloop.tools.datasets import EXAMPLE_DATASET
from medloop.tools.jobs import TrialDone, TrialJobs
from medloop.tools.registry import ToolModel, tool

_SETUP = threading.Lock()
JOBS_KEY = "trial_jobs"


def trial_jobs(ctx: ToolContext) -> TrialJobs:
    """The server-wide worker pool (created on first use)."""
    with _SETUP:
        jobs = ctx.shared.get(JOBS_KEY)
        if jobs is None:
            jobs = ctx.shared[JOBS_KEY] = TrialJobs(ctx.store, slots=ctx.limits.slots)
        assert isinstance(jobs, TrialJobs)
        return jobs


# ---------------------------------------------------------------- run_trial


class RunTrialInput(ToolModel):
    dataset_path: str = Field(min_length=1, description="Absolute path of an nnU-Net v2 raw dataset folder")
    trial_config: SegConfig = Field(
        default_factory=SegConfig,
        description="Trial configuration; leave out fields to keep their defaults (a small 2D UNet)",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=20,
        description="One trial per seed (e.g. [0, 1, 2] for a 3-seed arm)",
    )
    eval_fraction: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Training cases held out as the evaluation split (labels stay on host)",
    )
    split_seed: int = Field(default=12345, description="Seed of the site-stratified evaluation split")
    timeout_s: float = Field(
        default=1800.0, gt=0, description="Wall-clock limit per trial, enforced by the host"
    )
    memory_mb: int = Field(default=4096, ge=256, le=1_048_576, description="Memory limit per trial")
    gpus: int = Field(default=0, ge=0, le=8, description="GPUs per trial (0 = CPU)")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        return seeds


class SubmittedTrial(ToolModel):
    handle: str = Field(description="Pass to trial_status / trial_result (it is the trial id)")
    seed: int
    status: str
    reused: bool = Field(description="True when a finished trial with this exact spec already existed")


class RunTrialOutput(Budgeted):
    workbench_campaign_id: str = Field(description="The campaign record that holds this caller's trials")
    trials: list[SubmittedTrial]
    next_step: str


def workbench(ctx: ToolContext, dataset: Path, args: RunTrialInput) -> tuple[str, CampaignSpec]:
    """The caller's workbench campaign for this dataset and split (created on first use),
    and the spec this call's trials run under (its sandbox limits)."""
    task = args.trial_config.task
    cid = content_id(
        "cmp", "tools-workbench", ctx.caller.name, str(dataset), task, args.eval_fraction, args.split_seed
    )
    baseline = args.trial_config.model_dump(mode="json", exclude={"task"})
    first = next(iter(baseline))
    spec = CampaignSpec.model_validate(
        {
            "name": f"workbench of {ctx.caller.name}"[:120],
            "goal": f"Trials {ctx.caller.name} submitted through medloop tools (not a planned campaign)",
            "task": task,
            "dataset": {"path": dataset, "eval_fraction": args.eval_fraction, "split_seed": args.split_seed},
            "baseline": baseline,
            "search_space": {first: [baseline[first]]},
            "executor": {"kind": "local", "slots": 1},
            "sandbox": {
                "runtime": ctx.limits.runtime,
                "image": ctx.limits.image,
                "timeout": args.timeout_s,
                "memory_mb": args.memory_mb,
                "gpus": args.gpus,
            },
        }
    )
    with _SETUP:
        try:
            ctx.store.campaigns.get(cid)
        except NotFoundError:
            campaign = Campaign(
                id=cid,
                name=spec.name,
                spec=spec,
                # Not runnable by the agent: `campaign run/resume` refuse a stopped campaign.
                status="stopped",
                owner=ctx.caller.name,
                baseline=baseline,
                incumbent=baseline,
                summary={"workbench": True, "created_by": "tools"},
            )
            with ctx.store.transaction():
                ctx.store.campaigns.add(campaign)
                ctx.audit("tools.workbench", "campaign", cid, {"dataset": str(dataset)})
    return cid, spec


@tool(
    name="run_trial",
    roles=ACT,
    read_only=False,
    long_running=True,
    example={
        "dataset_path": EXAMPLE_DATASET,
        "trial_config": {"model": "unet", "loss": "dicece", "lr": 0.001, "iterations": 200},
        "seeds": [0, 1, 2],
    },
)
def run_trial(ctx: ToolContext, args: RunTrialInput) -> RunTrialOutput:
    """Submit sandboxed training trials (one per seed) and return their handles at once.

    Each trial trains the configured model on the dataset's training split inside a
    sandbox, predicts the held-out evaluation split, and the host recomputes the metrics
    from the predictions against labels the job never saw. Submitting an identical trial
    again returns the same handle; a finished trial with the same spec is reused.

    Use when: you need the measured effect of a configuration on a dataset. For a fair
    comparison submit the same seeds for control and treatment configs, then call
    compare_trials on the two lists of handles.
    Cost: real training: seconds (tiny 2D configs on CPU) to hours (3D); each trial counts
    against the caller's trial budget, and GPUs x timeout against the GPU-hour budget
    until the trial ends and its measured time is charged instead.
    Limits: timeout_s at most the server's limit; a dozen unfinished trials per caller;
    trials run on the tool server's sandbox runtime, a few at a time. A trial's outcome
    is final: one that failed, ran out of memory or timed out keeps that result (its
    handle is fixed by dataset, split, config and seed), so change the seed or config to
    try again.
    """
    if args.timeout_s > ctx.limits.max_trial_timeout_s:
        raise SpecError(
            f"run_trial: timeout_s {args.timeout_s:g} exceeds this server's limit of {ctx.limits.max_trial_timeout_s:g} s",
            hint="lower timeout_s (MEDLOOP_TOOLS_MAX_TRIAL_TIMEOUT_S sets the limit)",
        )
    dataset = resolve_path(ctx, args.dataset_path, what="dataset_path")
    confine_init(ctx, args.trial_config.init, what="trial_config.init")
    cid, spec = workbench(ctx, dataset, args)
    service = ctx.make_trials(spec, cid)
    try:
        specs = [service.spec_for(args.trial_config, seed, max_seconds=args.timeout_s) for seed in args.seeds]
    except BaseException:
        service.close()
        raise
    service.close()  # preparing the dataset is all it was needed for here
    jobs = trial_jobs(ctx)
    plan: list[tuple[int, str, Trial | None, bool]] = []  # seed, trial id, existing, reusable
    for seed, tspec in zip(args.seeds, specs, strict=True):
        tid = trial_id_for(cid, tspec)
        try:
            existing: Trial | None = ctx.store.trials.get(tid)
        except NotFoundError:
            existing = None
        done = existing is not None and existing.status in FINAL_STATUSES
        plan.append((seed, tid, existing, done or ctx.store.trials.find(tspec.spec_hash()) is not None))
    new = [p for p in plan if not p[3] and not jobs.active(p[1])]
    charged = ctx.ledger.charges(ctx.caller.name, TRIALS)  # a resubmission is not charged again
    uncharged = [p for p in new if p[1] not in charged]
    active = _active_trials(ctx, exclude={tid for _, tid, _, _ in plan})
    if active + len(new) > ctx.limits.max_concurrent_trials and new:
        raise ConflictError(
            f"caller {ctx.caller.name} has {active} unfinished trial(s); {len(new)} more would exceed "
            f"the limit of {ctx.limits.max_concurrent_trials}",
            hint="wait for them with trial_status (wait_s) before submitting more",
        )
    reserve = args.gpus * args.timeout_s / 3600.0
    require_budget(ctx, trials=len(uncharged), gpu_hours=reserve * len(uncharged))
    out = []
    for (seed, tid, existing, reusable), tspec in zip(plan, specs, strict=True):
        if existing is None:
            ctx.store.trials.put(
                Trial(
                    id=tid,
                    campaign_id=cid,
                    hypothesis_id=None,
                    arm="baseline",
                    spec=tspec,
                    spec_hash=tspec.spec_hash(),
                )
            )
        ctx.ledger.put_job(
            ToolJob(
                handle=tid,
                kind="trial",
                caller=ctx.caller.name,
                ref_id=tid,
                detail={"seed": seed, "gpus": args.gpus},
            )
        )
        status: str = existing.status if existing else "pending"
        if not (existing is not None and existing.status in FINAL_STATUSES) and not jobs.active(tid):
            if not reusable:
                ctx.ledger.charge(ctx.caller.name, TRIALS, tid, 1.0)
                if reserve:
                    ctx.ledger.charge(ctx.caller.name, GPU_HOURS, tid, reserve)
            request = TrialRequest(trial_id=tid, hypothesis_id=None, arm="baseline", spec=tspec)
            jobs.submit(ctx.make_trials(spec, cid), cid, request, on_done=_settle(ctx, args.gpus))
            status = "queued"
        out.append(SubmittedTrial(handle=tid, seed=seed, status=status, reused=reusable))
    ctx.audit(
        "tools.run_trial",
        "campaign",
        cid,
        {
            "trials": [t.handle for t in out],
            "config": args.trial_config.model_dump(mode="json"),
            "seeds": args.seeds,
        },
    )
    return RunTrialOutput(
        workbench_campaign_id=cid,
        trials=out,
        budget=budget_view(ctx),
        next_step="call trial_status with these handles (wait_s up to "
        f"{ctx.limits.max_wait_s:g} s blocks until they finish), then trial_result or compare_trials",
    )


def _settle(ctx: ToolContext, gpus: int) -> TrialDone:
    """When a trial ends, replace its GPU-hour reservation by the measured GPU time."""

    def done(trial: Trial) -> None:
        if not gpus or trial.result is None or trial.result.job is None:
            if gpus:
                ctx.ledger.charge(ctx.caller.name, GPU_HOURS, trial.id, 0.0, settle=True)
            return
        job = trial.result.job
        used = job.wall_s * max(len(job.provenance.gpu_ids), gpus) / 3600.0
        ctx.ledger.charge(ctx.caller.name, GPU_HOURS, trial.id, used, settle=True)

    return done


def _active_trials(ctx: ToolContext, *, exclude: set[str]) -> int:
    handles = [j.ref_id for j in ctx.ledger.list_jobs(caller=ctx.caller.name, kind="trial", limit=200)]
    busy = 0
    for tid in handles:
        if tid in exclude:
            continue
        try:
            if ctx.store.trials.get(tid).status not in FINAL_STATUSES and trial_jobs(ctx).active(tid):
                busy += 1
        except NotFoundError:
            continue
    return busy


# ---------------------------------------------------------------- trial_status


class StatusInput(ToolModel):
    handles: list[str] = Field(min_length=1, max_length=50, description="Handles from run_trial")
    wait_s: float = Field(
        default=0.0,
        ge=0,
        description="Block up to this many seconds until all trials finish (0: answer at once)",
    )


class TrialState(ToolModel):
    handle: str
    status: str = Field(description="pending | queued | running | succeeded | failed | oom | timed_out | ...")
    done: bool
    iteration: int | None = Field(default=None, description="Last optimizer step the job reported")
    iterations: int | None = Field(default=None, description="Optimizer steps the config asks for")
    loss: float | None = None
    elapsed_s: float | None = None
    objective: float | None = Field(default=None, description="Mean foreground Dice on the evaluation split")
    error: str | None = None


class StatusOutput(ToolModel):
    trials: list[TrialState]
    all_done: bool
    next_step: str


def _state(ctx: ToolContext, handle: str) -> TrialState:
    trial = ctx.store.trials.get(handle)
    jobs = trial_jobs(ctx)
    prog = jobs.progress(handle) or {}
    done = trial.status in FINAL_STATUSES
    status: str = trial.status
    if not done and jobs.active(handle):
        status = "running" if prog.get("started") else "queued"
    elif not done:
        prog.setdefault(
            "error", "no worker in this tool server runs it (the server restarted?); resubmit with run_trial"
        )
    iterations = getattr(trial.spec.config, "iterations", None)
    return TrialState(
        handle=handle,
        status=status,
        done=done,
        iteration=prog.get("iteration") if not done else iterations,
        iterations=iterations,
        loss=prog.get("loss"),
        elapsed_s=prog.get("elapsed_s")
        if not done
        else (trial.result.job.wall_s if trial.result and trial.result.job else None),
        objective=trial.result.objective if trial.result else None,
        error=(trial.result.error if trial.result else None) or prog.get("error"),
    )


@tool(
    name="trial_status",
    roles=READ,
    read_only=True,
    long_running=True,
    example={"handles": ["trl_0123456789abcdefghjkmnpqrs"], "wait_s": 60},
)
def trial_status(ctx: ToolContext, args: StatusInput) -> StatusOutput:
    """Report the state of submitted trials; optionally wait for them to finish.

    With wait_s > 0 the call blocks until every listed trial is done or the time is up,
    reporting progress (optimizer steps done of those asked for) while it waits, so a
    client can show it or simply call again.

    Use when: after run_trial, to follow progress or wait for results.
    Cost: cheap (reads the store); a waiting call holds a worker thread of the server.
    Limits: wait_s is capped by the server (MEDLOOP_TOOLS_MAX_WAIT_S); at most 50 handles.
    """
    for handle in args.handles:
        ctx.store.trials.get(handle)  # NotFoundError names the bad handle
    deadline = time.monotonic() + min(args.wait_s, ctx.limits.max_wait_s)
    states = [_state(ctx, h) for h in args.handles]
    while not all(s.done for s in states) and time.monotonic() < deadline:
        total = sum(s.iterations or 0 for s in states)
        done = sum((s.iteration or 0) if not s.done else (s.iterations or 0) for s in states)
        running = sum(1 for s in states if s.status == "running")
        ctx.report(
            done, total or None, f"{sum(s.done for s in states)}/{len(states)} done, {running} running"
        )
        trial_jobs(ctx).wait([s.handle for s in states if not s.done], min(2.0, deadline - time.monotonic()))
        states = [_state(ctx, h) for h in args.handles]
    all_done = all(s.done for s in states)
    if all_done:
        ctx.report(1.0, 1.0, "all done")
    return StatusOutput(
        trials=states,
        all_done=all_done,
        next_step="trial_result gives metrics and provenance; compare_trials tests two arms"
        if all_done
        else "call trial_status again (with wait_s) until all_done",
    )


# ---------------------------------------------------------------- trial_result


class ResultInput(ToolModel):
    handle: str = Field(min_length=1, description="A handle from run_trial (a trial id)")
    include_cases: bool = Field(default=False, description="Also return the per-case foreground Dice")


class SplitMetrics(ToolModel):
    split: str
    n_cases: int
    summary: dict[str, float | None] = Field(description="metric -> mean over cases of the foreground mean")
    by_site: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    per_case: dict[str, float] | None = Field(default=None, description="case -> foreground-mean Dice")
    implementation: str


class ResultOutput(ToolModel):
    handle: str
    status: str
    seed: int
    config: dict[str, Any]
    objective: float | None = Field(
        description="Mean foreground Dice on the evaluation split (host-recomputed)"
    )
    splits: list[SplitMetrics]
    error: str | None = None
    tamper_gap: float | None = Field(
        default=None, description="Max |reported - recomputed| (tampered if large)"
    )
    history: list[dict[str, float]] = Field(default_factory=list, description="Per-epoch records of the job")
    efficiency: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(
        description="spec hash, dataset checksum, code version, runtime, image"
    )


@tool(name="trial_result", roles=READ, read_only=True, example={"handle": "trl_0123456789abcdefghjkmnpqrs"})
def trial_result(ctx: ToolContext, args: ResultInput) -> ResultOutput:
    """Return a finished trial's metrics (recomputed on the host) and its provenance.

    Metrics come from the job's predictions scored against held-out labels the job never
    saw; a job whose own reported numbers disagree is marked tampered. Failed, timed-out
    and out-of-memory trials are results too: status and error say what happened.

    Use when: a trial is done (trial_status says done) and you need its numbers.
    Cost: cheap (reads the store).
    Limits: refuses unfinished trials (call trial_status with wait_s first).
    """
    trial = ctx.store.trials.get(args.handle)
    if trial.status not in FINAL_STATUSES:
        raise ConflictError(
            f"trial {args.handle} is {trial.status}, not finished",
            hint="call trial_status with wait_s until done, then trial_result",
        )
    result = trial.result
    splits = []
    for name, ev in (result.evaluations if result else {}).items():
        per_case = case_objective(ev, "dice") if args.include_cases else None
        splits.append(
            SplitMetrics(
                split=name,
                n_cases=len(ev.cases),
                summary=ev.summary,
                by_site=ev.by_site,
                per_case=per_case,
                implementation=ev.implementation,
            )
        )
    job = result.job if result else None
    prov: dict[str, Any] = {"spec_hash": trial.spec_hash, "dataset_checksum": trial.spec.dataset.checksum}
    if job is not None:
        p = job.provenance
        prov.update(
            code_version=p.code_version,
            code_commit=p.code_commit,
            runtime=p.runtime,
            image=p.image,
            host=p.host,
            gpu_ids=p.gpu_ids,
            wall_s=job.wall_s,
            exit_code=job.exit_code,
        )
    return ResultOutput(
        handle=trial.id,
        status=trial.status,
        seed=trial.spec.seed,
        config=trial.spec.config.model_dump(mode="json"),
        objective=result.objective if result else None,
        splits=splits,
        error=result.error if result else None,
        tamper_gap=result.tamper_gap if result else None,
        history=(result.history if result else [])[-20:],
        efficiency=result.efficiency if result else {},
        provenance=prov,
    )
