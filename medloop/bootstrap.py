"""The one place that turns settings into concrete backends.

Everything else receives instances (STYLE.md, practice 3). Imports are local to each
function so that `import medloop.bootstrap` stays cheap (no torch, chromadb, langgraph).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medloop.core.errors import SpecError
from medloop.core.settings import Settings
from medloop.core.store import SQLiteStore, open_store

if TYPE_CHECKING:
    from medloop.agents.base import Planner
    from medloop.agents.runner import CampaignRunner
    from medloop.agents.services import CampaignServices, EventCallback
    from medloop.core.specs import CampaignSpec
    from medloop.core.store import Store
    from medloop.knowledge.base import KnowledgeBase
    from medloop.llm.base import LLMClient
    from medloop.sandbox.base import Executor
    from medloop.tools.base import TrialService


def store(settings: Settings) -> SQLiteStore:
    return open_store(settings.db_path)


def knowledge(settings: Settings, store: Store) -> KnowledgeBase:
    from medloop.knowledge.factory import make_knowledge_base

    return make_knowledge_base(settings, store)


def executor_factory(settings: Settings) -> Callable[[CampaignSpec], Executor]:
    from medloop.sandbox.factory import make_executor

    def make(spec: CampaignSpec) -> Executor:
        return make_executor(settings, spec.sandbox, spec.executor, spec.budget)

    return make


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
        return LLMPlanner(llm(settings, model), fallback=offline, budget_usd=spec.budget.max_llm_usd)

    return make


def trials_factory(settings: Settings, store: Store) -> Callable[[CampaignSpec], TrialService]:
    """Sandbox-backed trials, or the replay table when `executor.kind` is `table`."""
    make_exec = executor_factory(settings)

    def make(spec: CampaignSpec) -> TrialService:
        if spec.executor.kind == "table":
            from medloop.tools.replay import ReplayTrials

            if spec.executor.table is None:
                raise SpecError("executor.kind is table but executor.table is not set")
            return ReplayTrials(store, spec, table=spec.executor.table)
        from medloop.tools.trials import SandboxTrials

        return SandboxTrials(
            store,
            spec,
            executor=make_exec(spec),
            workspace=settings.workspace_dir,
            staging_dir=settings.staging_dir,
        )

    return make


def campaign_services(settings: Settings, *, store_: Store | None = None) -> CampaignServices:
    from medloop.agents.services import CampaignServices

    st = store_ or store(settings)
    return CampaignServices(
        store=st,
        knowledge=knowledge(settings, st),
        make_trials=trials_factory(settings, st),
        make_planner=planner_factory(settings),
        checkpoints_path=settings.checkpoints_path,
        actor="agent",
        plan_baseline=plan_baseline,
    )


def plan_baseline(spec: CampaignSpec) -> dict[str, Any]:
    """`baseline: auto`: the dataset's nnU-Net-style plans (made once, saved next to it)."""
    if spec.task != "segmentation":
        raise SpecError(f"baseline: auto is available for segmentation, not {spec.task}")
    from medloop.experiments.dataset.plans import plan_baseline as plans

    return dict(plans(spec.dataset.path))


def campaign_runner(settings: Settings, on_event: EventCallback | None = None) -> CampaignRunner:
    from medloop.agents.runner import CampaignRunner

    return CampaignRunner(campaign_services(settings), on_event)
