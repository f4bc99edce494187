"""What the campaign graph needs, injected by bootstrap (the agent never builds backends)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medloop.agents.base import Planner
from medloop.core.specs import CampaignSpec
from medloop.core.store import Store
from medloop.engine.base import TrialService
from medloop.knowledge.base import KnowledgeBase

EventCallback = Callable[[str, dict[str, Any]], None]


@dataclass
class CampaignServices:
    store: Store
    knowledge: KnowledgeBase
    # (spec, campaign id) -> the campaign's trial service; budgets already spent carry over
    make_trials: Callable[[CampaignSpec, str], TrialService]
    make_planner: Callable[[CampaignSpec], Planner]
    checkpoints_path: Path
    actor: str = "agent"
    # Planned baseline for `baseline: auto` (nnU-Net-style plans of the dataset).
    plan_baseline: Callable[[CampaignSpec], dict[str, Any]] | None = None
