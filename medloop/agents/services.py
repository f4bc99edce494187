"""What the campaign graph needs, injected by bootstrap (the agent never builds backends)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from medloop.agents.base import Planner
from medloop.core.specs import CampaignSpec
from medloop.core.store import Store
from medloop.engine.base import TrialService
from medloop.knowledge.base import KnowledgeBase

EventCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Checkpoints:
    """Where campaign graphs keep their state, and the lock that lets one process drive a
    campaign at a time. Bootstrap picks both to match the store: SQLite files in the
    workspace, or Postgres (its tables, an advisory lock)."""

    saver: Callable[[], AbstractContextManager[Any]]  # a LangGraph checkpointer, per use
    lock: Callable[[str], AbstractContextManager[None]]  # campaign id -> held while driving it


@dataclass
class CampaignServices:
    store: Store
    knowledge: KnowledgeBase
    # (spec, campaign id) -> the campaign's trial service; budgets already spent carry over
    make_trials: Callable[[CampaignSpec, str], TrialService]
    make_planner: Callable[[CampaignSpec], Planner]
    checkpoints: Checkpoints
    actor: str = "agent"
    # Planned baseline for `baseline: auto` (nnU-Net-style plans of the dataset).
    plan_baseline: Callable[[CampaignSpec], dict[str, Any]] | None = None
    # Reads the campaign's inputs in full (every case) and raises before any record.
    preflight: Callable[[CampaignSpec], None] | None = None
