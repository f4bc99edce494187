"""Campaign tools: campaign_start and campaign_status, and the process launcher.

A campaign runs for minutes to hours, so campaign_start does not run it in the tool
server: the injected launcher creates the campaign record (through the agents' runner,
which bootstrap hands it; the tool library may not import the agent) and starts
`python -m medloop campaign resume <id>` as a detached process. The campaign then
outlives the tool session, keeps its own LangGraph checkpoints (`medloop campaign resume`
continues it after a crash) and cannot stall the tool server; campaign_status reads its
progress from the store, which is the truth for both processes.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field, model_validator

from medloop.core.accounts import ToolJob
from medloop.core.errors import MedloopError, NotFoundError, SandboxUnavailable, SpecError
from medloop.core.specs import CampaignSpec, load_campaign_spec, parse_campaign_spec
from medloop.engine.launcher import CampaignProcesses
from medloop.tools.common import (
    CAMPAIGNS,
    GPU_HOURS,
    TRIALS,
    Budgeted,
    budget_view,
    confine_init,
    require_budget,
    resolve_path,
)
from medloop.tools.context import ACT, READ, CampaignLaunch, CreateCampaign, ToolContext
from medloop.tools.registry import ToolModel, tool

FINAL_CAMPAIGN = ("completed", "incomplete", "stopped", "failed")


class ProcessLauncher:
    """`CampaignLauncher` for the tool server: creates the campaign record (with the
    agents' runner, injected by bootstrap) and runs it through the shared process
    launcher (medloop.engine.launcher), the same one the dashboard uses."""

    def __init__(self, create: CreateCampaign, processes: CampaignProcesses) -> None:
        self.create = create
        self.processes = processes

    def start(self, spec: CampaignSpec, *, owner: str) -> CampaignLaunch:
        campaign = self.create(spec, owner)
        try:
            pid = self.processes.start(campaign.id)
        except MedloopError as exc:
            raise SandboxUnavailable(
                f"campaign {campaign.id} was created but its process did not start: {exc.message}",
                hint=f"run `medloop campaign resume {campaign.id}`",
            ) from None
        return CampaignLaunch(campaign_id=campaign.id, pid=pid, log=str(self.processes.log_path(campaign.id)))

    def running(self, launch: CampaignLaunch) -> bool | None:
        return self.processes.running_pid(launch.campaign_id) is not None


# ---------------------------------------------------------------- campaign_start


class StartInput(ToolModel):
    spec: dict[str, Any] | None = Field(
        default=None,
        description="The campaign as a JSON object with the keys of a campaign YAML file "
        "(name, goal, task, dataset, objective, baseline, search_space, validation, budget, "
        "executor, sandbox, planner); budget.max_trials is required",
    )
    spec_path: str | None = Field(
        default=None, description="Instead of spec: a campaign YAML file on the server"
    )

    @model_validator(mode="after")
    def _one(self) -> StartInput:
        if (self.spec is None) == (self.spec_path is None):
            raise ValueError("give exactly one of spec or spec_path")
        return self


class StartOutput(Budgeted):
    campaign_id: str
    status: str
    pid: int | None
    log: str | None
    next_step: str


def _load(ctx: ToolContext, args: StartInput) -> CampaignSpec:
    if args.spec_path is not None:
        path = resolve_path(ctx, args.spec_path, what="spec_path", must_be_dir=False)
        spec = load_campaign_spec(path)
    else:
        spec = parse_campaign_spec(args.spec, source="spec")
    if spec.executor.kind == "table" and spec.executor.table is not None:
        resolve_path(ctx, str(spec.executor.table), what="spec.executor.table", must_be_dir=False)
    else:
        resolve_path(ctx, str(spec.dataset.path), what="spec.dataset.path")
    confine_init(ctx, spec.baseline_overrides.get("init"), what="spec.baseline.init")
    factor = spec.search_space.get("init")
    for choice in getattr(factor, "choices", None) or []:
        confine_init(ctx, choice, what="spec.search_space.init")
    if spec.budget.max_trials is None:
        raise SpecError(
            "spec.budget.max_trials: required for campaigns started through tools",
            hint="set a trial budget, e.g. budget: {max_trials: 40}; it is charged to your trial budget",
        )
    if spec.sandbox.gpus and spec.budget.max_gpu_hours is None:
        raise SpecError(
            "spec.budget.max_gpu_hours: required when sandbox.gpus > 0",
            hint="set a GPU-hour budget; it is charged to your GPU-hour budget",
        )
    if spec.sandbox.timeout > ctx.limits.max_trial_timeout_s:
        raise SpecError(
            f"spec.sandbox.timeout: {spec.sandbox.timeout:g} s exceeds this server's limit of "
            f"{ctx.limits.max_trial_timeout_s:g} s"
        )
    return spec


@tool(
    name="campaign_start",
    roles=ACT,
    read_only=False,
    long_running=True,
    example={
        "spec": {
            "name": "loss-study",
            "goal": "Raise mean foreground Dice on the phantom",
            "dataset": {"path": "/data/nnUNet_raw/Dataset901_Phantom"},
            "baseline": {"loss": "dice", "iterations": 150},
            "search_space": {"loss": ["dice", "dicece"], "augmentation": ["none", "light"]},
            "budget": {"max_trials": 30, "max_cycles": 2},
        }
    },
)
def campaign_start(ctx: ToolContext, args: StartInput) -> StartOutput:
    """Start an autonomous research campaign and return its id at once.

    The campaign runs medloop's own planner in a separate process: cycles of hypotheses,
    controlled trials (control vs treatment over several seeds), paired statistics,
    claims written to the knowledge base, reproduction of supported effects, and a final
    test-split comparison of the best configuration against the baseline. The caller
    owns the campaign.

    Use when: you want medloop to search a space of configurations on its own, rather
    than running and comparing single trials yourself.
    Cost: the campaign's trial budget (budget.max_trials, required) is charged to the
    caller's trial budget at once and settled to the trials actually run when it ends;
    GPU campaigns charge budget.max_gpu_hours likewise. Minutes to hours of compute.
    Limits: a few campaigns per caller per window; sandbox timeouts capped by the server.
    """
    if ctx.launcher is None:
        raise SandboxUnavailable(
            "this tool server cannot start campaigns (no launcher configured)",
            hint="run `medloop campaign run FILE` on the server instead",
        )
    spec = _load(ctx, args)
    trials = int(spec.budget.max_trials or 0)
    gpu_hours = float(spec.budget.max_gpu_hours or 0.0) if spec.sandbox.gpus else 0.0
    require_budget(ctx, campaigns=1, trials=trials, gpu_hours=gpu_hours)
    launch = ctx.launcher.start(spec, owner=ctx.caller.name)
    cid = launch.campaign_id
    ctx.ledger.charge(ctx.caller.name, CAMPAIGNS, cid, 1.0)
    ctx.ledger.charge(ctx.caller.name, TRIALS, cid, float(trials))
    if gpu_hours:
        ctx.ledger.charge(ctx.caller.name, GPU_HOURS, cid, gpu_hours)
    ctx.ledger.put_job(
        ToolJob(
            handle=cid,
            kind="campaign",
            caller=ctx.caller.name,
            ref_id=cid,
            detail=launch.model_dump(mode="json"),
        )
    )
    ctx.audit("tools.campaign_start", "campaign", cid, {"name": spec.name, "pid": launch.pid})
    return StartOutput(
        campaign_id=cid,
        status=ctx.store.campaigns.get(cid).status,
        pid=launch.pid,
        log=launch.log,
        budget=budget_view(ctx),
        next_step="call campaign_status with this id (wait_s blocks while it runs)",
    )


# ---------------------------------------------------------------- campaign_status


class CampaignStatusInput(ToolModel):
    campaign_id: str = Field(min_length=1)
    wait_s: float = Field(
        default=0.0, ge=0, description="Block up to this many seconds until the campaign ends"
    )


class HypothesisView(ToolModel):
    id: str
    cycle: int
    statement: str
    verdict: str
    estimate: float | None = None
    ci: list[float] | None = None
    p_adjusted: float | None = None
    reproduction: str
    claim_id: str | None = None


class CampaignStatusOutput(ToolModel):
    campaign_id: str
    name: str
    status: str
    owner: str
    process_running: bool | None = Field(description="Is the campaign's process alive (None: unknown)")
    log: str | None = None
    cycles_done: int
    max_cycles: int
    trials: dict[str, int] = Field(description="status -> count")
    hypotheses: list[HypothesisView]
    baseline_objective: float | None
    incumbent_objective: float | None
    incumbent: dict[str, Any]
    stop_reason: str | None = None
    waiting_for: str | None = None
    incomplete: str | None = Field(default=None, description="Why the campaign ended without its test result")
    error: str | None = Field(default=None, description="Why the campaign failed")
    test: dict[str, Any] | None = Field(
        default=None, description="Final test-split comparison, once completed"
    )
    next_step: str


def _status(ctx: ToolContext, campaign_id: str) -> CampaignStatusOutput:
    c = ctx.store.campaigns.get(campaign_id)
    launch: CampaignLaunch | None = None
    try:
        launch = CampaignLaunch.model_validate(ctx.ledger.get_job(campaign_id).detail)
    except NotFoundError:  # created elsewhere (CLI, dashboard): no process of ours to watch
        launch = None
    alive = ctx.launcher.running(launch) if ctx.launcher is not None and launch is not None else None
    counts: dict[str, int] = {}
    for t in ctx.store.trials.list(campaign_id=campaign_id, limit=100_000):
        counts[t.status] = counts.get(t.status, 0) + 1
    hyps = [
        HypothesisView(
            id=h.id,
            cycle=h.cycle,
            statement=h.statement,
            verdict=h.verdict,
            estimate=h.analysis.get("estimate"),
            ci=[h.analysis["ci_low"], h.analysis["ci_high"]] if "ci_low" in h.analysis else None,
            p_adjusted=h.analysis.get("p_adjusted"),
            reproduction=h.reproduction,
            claim_id=h.claim_id,
        )
        for h in ctx.store.cycles.hypotheses(campaign_id)
    ]
    waiting = c.summary.get("waiting_for") if c.status == "paused" else None
    if c.status in FINAL_CAMPAIGN:
        hint = "done: get_claim / search_knowledge show what it learned"
    elif alive is False:
        hint = f"its process ended while the campaign is {c.status}: see the log; `medloop campaign resume {c.id}`"
    elif waiting:
        hint = f"paused, waiting for {waiting}: a human resumes it (`medloop campaign resume {c.id}`)"
    else:
        hint = "running: call campaign_status again (with wait_s)"
    return CampaignStatusOutput(
        campaign_id=c.id,
        name=c.name,
        status=c.status,
        owner=c.owner,
        process_running=alive,
        log=launch.log if launch else None,
        cycles_done=len(ctx.store.cycles.list(campaign_id)),
        max_cycles=c.spec.budget.max_cycles,
        trials=counts,
        hypotheses=hyps,
        baseline_objective=c.baseline_objective,
        incumbent_objective=c.incumbent_objective,
        incumbent=c.incumbent,
        stop_reason=c.summary.get("stop_reason"),
        incomplete=c.summary.get("incomplete"),
        error=c.summary.get("error") if c.status == "failed" else None,
        waiting_for=waiting,
        test=c.summary.get("test"),
        next_step=hint,
    )


def _settle(ctx: ToolContext, status: CampaignStatusOutput) -> None:
    """A finished campaign charges the trials it ran instead of its reservation."""
    if status.status not in FINAL_CAMPAIGN:
        return
    try:
        job = ctx.ledger.get_job(status.campaign_id)
    except NotFoundError:  # not started through the tools: nothing was reserved
        return
    ran = float(sum(status.trials.values()))
    ctx.ledger.charge(job.caller, TRIALS, status.campaign_id, ran, settle=True)


@tool(
    name="campaign_status",
    roles=READ,
    read_only=True,
    long_running=True,
    example={"campaign_id": "cmp_0123456789abcdefghjkmnpqrs", "wait_s": 60},
)
def campaign_status(ctx: ToolContext, args: CampaignStatusInput) -> CampaignStatusOutput:
    """Report a campaign's progress: cycles, trials, hypotheses with verdicts, incumbent.

    With wait_s > 0 the call blocks until the campaign ends (completed, stopped, failed),
    pauses, or the time is up, reporting progress (cycles done of the maximum).

    Use when: after campaign_start, or to inspect any campaign in the store.
    Cost: cheap (reads the store).
    Limits: wait_s is capped by the server (MEDLOOP_TOOLS_MAX_WAIT_S).
    """
    deadline = time.monotonic() + min(args.wait_s, ctx.limits.max_wait_s)
    status = _status(ctx, args.campaign_id)
    while (
        status.status not in (*FINAL_CAMPAIGN, "paused")
        and status.process_running is not False
        and time.monotonic() < deadline
    ):
        ctx.report(
            status.cycles_done, status.max_cycles, f"{status.status}: {sum(status.trials.values())} trials"
        )
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        status = _status(ctx, args.campaign_id)
    _settle(ctx, status)
    return status
