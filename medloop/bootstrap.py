"""The one place that turns settings into concrete backends.

Everything else receives instances (STYLE.md, practice 3). Imports are local to each
function so that `import medloop.bootstrap` stays cheap (no torch, chromadb, langgraph).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medloop.core.errors import ConflictError, SpecError
from medloop.core.settings import Settings
from medloop.core.store import open_store

if TYPE_CHECKING:
    from medloop.agents.base import Planner
    from medloop.agents.runner import CampaignRunner
    from medloop.agents.services import CampaignServices, Checkpoints, EventCallback
    from medloop.core.records import Campaign, Trial
    from medloop.core.specs import CampaignSpec, ExecutorSpec, SandboxSpec
    from medloop.core.store import Store
    from medloop.engine.base import TrialService
    from medloop.engine.launcher import CampaignProcesses
    from medloop.knowledge.base import KnowledgeBase
    from medloop.llm.base import LLMClient
    from medloop.sandbox.base import Executor
    from medloop.tools.context import Caller, ToolContext


def store(settings: Settings) -> Store:
    """SQLite in the workspace, or the database of MEDLOOP_DB_URL (migrated on open)."""
    return open_store(settings.store_url)


def checkpoints(settings: Settings) -> Checkpoints:
    """Campaign checkpoints and locks beside the store: files in the workspace for SQLite,
    the store's own database for Postgres (so no host needs the workspace for them)."""
    if settings.postgres:
        return postgres_checkpoints(settings.store_url)
    return local_checkpoints(settings.checkpoints_path)


def local_checkpoints(path: Path) -> Checkpoints:
    """LangGraph's SqliteSaver on `path`; lock files in `locks/` beside it."""
    from medloop.agents.services import Checkpoints

    @contextmanager
    def saver() -> Iterator[Any]:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()

    return Checkpoints(saver, partial(_file_lock, path.parent / "locks"))


def postgres_checkpoints(url: str) -> Checkpoints:
    """LangGraph's PostgresSaver in the store's database; Postgres advisory locks."""
    from medloop.agents.services import Checkpoints

    dsn = "postgresql://" + url.split("://", 1)[1]  # libpq's spelling, without the driver

    @contextmanager
    def saver() -> Iterator[Any]:
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(dsn) as cp:
            conn: Any = cp.conn  # one connection (from_conn_string), not a pool
            key = _lock_key("checkpoints.setup")  # setup() is not safe to run twice at once
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                cp.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            yield cp

    return Checkpoints(saver, partial(_advisory_lock, dsn))


def _busy(campaign_id: str, holder: str) -> ConflictError:
    return ConflictError(
        f"campaign {campaign_id} is being run by {holder}",
        hint="wait for it, or pause/stop it; one process drives a campaign at a time",
    )


@contextmanager
def _file_lock(folder: Path, campaign_id: str) -> Iterator[None]:
    import fcntl
    import os

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{campaign_id}.lock").open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise _busy(campaign_id, fh.read().strip() or "another process") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def _advisory_lock(dsn: str, campaign_id: str) -> Iterator[None]:
    """Held by this process's connection: a crashed runner's lock ends with it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        key = _lock_key(f"campaign:{campaign_id}")
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not row or not row[0]:
            raise _busy(campaign_id, "another process (a Postgres advisory lock is held)")
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def knowledge(
    settings: Settings, store: Store, *, reconcile: bool = True, reembed: bool = False, repair: bool = False
) -> KnowledgeBase:
    """The knowledge base of the settings' vector index and embedder (`reembed`: opened for
    `rebuild(reembed=True)`, see make_knowledge_base)."""
    from medloop.knowledge.factory import make_knowledge_base

    return make_knowledge_base(settings, store, reconcile=reconcile, reembed=reembed, repair=repair)


def executor(settings: Settings, sandbox: SandboxSpec, spec: ExecutorSpec | None = None) -> Executor:
    """An executor outside a campaign (e.g. `medloop vqa run` of a local model)."""
    from medloop.core.specs import ExecutorSpec
    from medloop.sandbox.factory import make_executor

    return make_executor(settings, sandbox, spec or ExecutorSpec())


def executor_factory(settings: Settings) -> Callable[[CampaignSpec], Executor]:
    from medloop.sandbox.factory import make_executor

    def make(spec: CampaignSpec) -> Executor:
        return make_executor(settings, spec.sandbox, spec.executor, spec.budget)

    return make


def spent_budget(store: Store, campaign_id: str) -> dict[str, float]:
    """What a campaign has already used: jobs run and GPU-hours from its trial ledger (the
    host clock's job wall times), wall seconds as charged by the agent up to its last
    finished cycle. A resumed campaign's scheduler starts from here."""
    from medloop.sandbox.base import never_started

    trials = jobs = 0
    gpu_s = 0.0
    wall_s = max((float(c.get("active_s", 0.0)) for c in store.cycles.list(campaign_id)), default=0.0)
    after = None
    while True:
        page = store.trials.list(campaign_id=campaign_id, after=after, limit=1000)
        for t in page:
            trials += 1
            job = t.result.job if t.result else None
            if job is None or never_started(job) or _reused(t, campaign_id):
                continue  # cost nothing here: refused before it ran, or another campaign's job
            jobs += 1
            gpu_s += job.wall_s * len(job.provenance.gpu_ids)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    return {"trials": jobs, "wall_s": wall_s, "gpu_hours": gpu_s / 3600.0}


def _reused(trial: Trial, campaign_id: str) -> bool:
    """A result copied from another trial by spec hash (older rows: a job keyed by another
    campaign) was paid for there."""
    result = trial.result
    if result is None or result.job is None:
        return False
    if result.reused_from is not None:
        return True
    prefix = result.job.key.split(".", 1)[0]
    return prefix.startswith("cmp_") and prefix != campaign_id


def llm(settings: Settings, model: str | None) -> LLMClient:
    from medloop.llm.factory import make_llm

    return make_llm(settings, model)


def planner_factory(settings: Settings) -> Callable[[CampaignSpec], Planner]:
    def make(spec: CampaignSpec) -> Planner:
        from medloop.agents.planners.offline import OfflinePlanner

        offline = OfflinePlanner()
        if spec.planner.kind == "offline":
            return offline
        from medloop.agents.planners.llm import LLMPlanner

        model = spec.planner.model or settings.llm_model
        if not model:
            raise SpecError(
                "planner.kind is llm but no model is set",
                hint="set planner.model in the campaign file or MEDLOOP_LLM_MODEL",
            )
        return LLMPlanner(
            llm(settings, model),
            fallback=offline,
            budget_usd=spec.budget.max_llm_usd,
            budget_tokens=spec.budget.max_llm_tokens,
        )

    return make


def trials_factory(
    settings: Settings, store: Store, *, charge_campaign: bool = True
) -> Callable[[CampaignSpec, str], TrialService]:
    """Sandbox-backed trials, or the replay table when `executor.kind` is `table`.
    `charge_campaign=False` (reviewer-requested reproductions) starts the budget at zero:
    the campaign's limits still cap the request, but what the campaign spent does not."""
    from medloop.sandbox.factory import make_executor

    def make(spec: CampaignSpec, campaign_id: str) -> TrialService:
        if spec.executor.kind == "table":
            from medloop.engine.replay import ReplayTrials

            if spec.executor.table is None:
                raise SpecError("executor.kind is table but executor.table is not set")
            return ReplayTrials(store, spec, table=spec.executor.table)
        from medloop.engine.trials import SandboxTrials
        from medloop.sandbox.scheduler import BudgetUsage

        spent = BudgetUsage(**spent_budget(store, campaign_id)) if charge_campaign else BudgetUsage()
        executor = make_executor(settings, spec.sandbox, spec.executor, spec.budget, spent=spent)
        return SandboxTrials(
            store, spec, executor=executor, workspace=settings.workspace_dir, staging_dir=settings.staging_dir
        )

    return make


def campaign_services(
    settings: Settings, *, store_: Store | None = None, charge_campaign: bool = True
) -> CampaignServices:
    from medloop.agents.services import CampaignServices

    st = store_ or store(settings)
    return CampaignServices(
        store=st,
        knowledge=knowledge(settings, st),
        make_trials=trials_factory(settings, st, charge_campaign=charge_campaign),
        make_planner=planner_factory(settings),
        checkpoints=checkpoints(settings),
        actor="agent",
        plan_baseline=plan_baseline,
        preflight=preflight,
    )


def preflight(spec: CampaignSpec) -> None:
    """Check a campaign's inputs in full before anything is recorded (engine/preflight.py)."""
    from medloop.engine.preflight import check_inputs

    check_inputs(spec)


def plan_baseline(spec: CampaignSpec) -> dict[str, Any]:
    """`baseline: auto`: the dataset's nnU-Net-style plans (made once, saved next to it)."""
    if spec.task != "segmentation":
        raise SpecError(f"baseline: auto is available for segmentation, not {spec.task}")
    from medloop.experiments.dataset.plans import plan_baseline as plans

    return dict(plans(spec.dataset.path))


def campaign_runner(settings: Settings, on_event: EventCallback | None = None) -> CampaignRunner:
    from medloop.agents.runner import CampaignRunner

    return CampaignRunner(campaign_services(settings), on_event)


def campaign_processes(settings: Settings, *, cwd: Path | None = None) -> CampaignProcesses:
    """The one campaign process launcher (dashboard, tool server and CLI share it)."""
    from medloop.engine.launcher import CampaignProcesses

    return CampaignProcesses(settings, cwd=cwd)


def tool_context(
    settings: Settings, caller: Caller | None = None, *, store_: Store | None = None
) -> ToolContext:
    """What the tool library runs with, acting as `caller` (default: MEDLOOP_USER as agent).

    Campaigns started through tools run in their own `medloop campaign resume` process
    (tools may not import the agent); the record is created here with the agents' runner.
    """
    from medloop.tools.campaigns import ProcessLauncher
    from medloop.tools.context import Caller, ToolContext, ToolLimits

    st = store_ or store(settings)
    kb = knowledge(settings, st)

    def create(spec: CampaignSpec, owner: str) -> Campaign:
        from medloop.agents.runner import CampaignRunner
        from medloop.agents.services import CampaignServices

        services = CampaignServices(
            store=st,
            knowledge=kb,
            make_trials=trials_factory(settings, st),
            make_planner=planner_factory(settings),
            checkpoints=checkpoints(settings),
            plan_baseline=plan_baseline,
            preflight=preflight,
        )
        return CampaignRunner(services).create(spec, owner=owner)

    launcher = ProcessLauncher(create, campaign_processes(settings))
    return ToolContext(
        store=st,
        ledger=st.ledger,
        knowledge=kb,
        make_trials=trials_factory(settings, st),
        caller=caller or Caller(settings.user),
        limits=ToolLimits(),
        workspace=settings.workspace_dir,
        launcher=launcher,
    )
