"""What a tool runs with: the caller (name and role), per-caller limits, and the services
bootstrap injects (store, knowledge base, trial factory, campaign launcher). Tools never
build a backend themselves (DESIGN.md: tools get their dependencies injected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from medloop.core.errors import SpecError
from medloop.core.records import Campaign
from medloop.core.specs import CampaignSpec
from medloop.core.store import Store
from medloop.core.store.base import ToolLedger
from medloop.engine.base import TrialService
from medloop.knowledge.base import KnowledgeBase

Role = Literal["viewer", "agent", "reviewer", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
# Who may call what. Reading is open to every role; anything that spends compute or
# writes to the knowledge base needs a role that acts.
READ: tuple[Role, ...] = ("viewer", "agent", "reviewer", "admin")
ACT: tuple[Role, ...] = ("agent", "reviewer", "admin")
# The held-out test split is touched once per campaign; tools let only humans score on it.
TEST_SPLIT: tuple[Role, ...] = ("reviewer", "admin")

ProgressFn = Callable[[float, float | None, str | None], None]
"""progress(done, total, message): called from the tool's thread while it works."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: a name recorded as the actor of everything the call does, and a
    role that decides what the call may do. Budgets are kept per name."""

    name: str
    role: Role = "agent"

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise SpecError("a tool caller needs a non-empty name")
        if self.role not in ROLES:
            raise SpecError(f"unknown role {self.role!r}", hint=f"roles: {', '.join(ROLES)}")


class ToolLimits(BaseSettings):
    """Per-caller budgets and safety limits of the tool library (`MEDLOOP_TOOLS_<FIELD>`).

    Usage is counted over a sliding window, per caller name, in the store, so restarting a
    tool server does not reset it."""

    model_config = SettingsConfigDict(env_prefix="MEDLOOP_TOOLS_", extra="ignore", frozen=True)

    window_hours: float = Field(default=24.0, gt=0, description="Budgets count usage over this window")
    max_trials: int = Field(default=100, ge=0, description="Trials one caller may submit per window")
    max_gpu_hours: float = Field(default=8.0, ge=0, description="GPU-hours one caller may use per window")
    max_concurrent_trials: int = Field(
        default=12, ge=1, description="Unfinished (queued or running) trials per caller"
    )
    max_campaigns: int = Field(default=3, ge=0, description="Campaigns one caller may start per window")
    max_trial_timeout_s: float = Field(
        default=3600.0, gt=0, description="Longest timeout a trial may ask for"
    )
    slots: int = Field(default=1, ge=1, description="Trials this tool server runs at once (all callers)")
    max_wait_s: float = Field(default=120.0, ge=0, description="Longest a status call may block")
    runtime: Literal["local", "docker"] = Field(default="local", description="Sandbox runtime of tool trials")
    image: str | None = Field(default=None, description="Sandbox image (docker runtime)")
    data_roots: str = Field(
        default="",
        description="Comma list of folders tools may read datasets and predictions from; empty: anywhere",
    )

    def roots(self) -> list[Path]:
        return [Path(p.strip()).expanduser().resolve() for p in self.data_roots.split(",") if p.strip()]


class CampaignLaunch(BaseModel):
    """A campaign started on behalf of a caller: its id and the process running it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    campaign_id: str
    pid: int | None = None
    log: str | None = None


class CampaignLauncher(Protocol):
    """Starts campaigns outside the calling process (bootstrap injects one: the tool
    library may not import the agent that runs campaigns)."""

    def start(self, spec: CampaignSpec, *, owner: str) -> CampaignLaunch:
        """Create the campaign record and start running it; return at once."""
        ...

    def running(self, launch: CampaignLaunch) -> bool | None:
        """Is the process still alive? None when it cannot tell (another host)."""
        ...


CreateCampaign = Callable[[CampaignSpec, str], Campaign]


@dataclass(frozen=True)
class ToolContext:
    """Everything a tool call may use. One per caller; `as_caller` and `with_progress`
    make per-call copies that share the same services (and the trial job pool)."""

    store: Store
    ledger: ToolLedger
    knowledge: KnowledgeBase
    make_trials: Callable[[CampaignSpec, str], TrialService]
    caller: Caller
    limits: ToolLimits = field(default_factory=ToolLimits)
    workspace: Path = Path(".medloop")
    launcher: CampaignLauncher | None = None
    progress: ProgressFn | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    """Process-wide state of the tool library (the trial job pool), keyed by owner."""

    def as_caller(self, caller: Caller) -> ToolContext:
        return replace(self, caller=caller, progress=None)

    def with_progress(self, progress: ProgressFn | None) -> ToolContext:
        return replace(self, progress=progress)

    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress is not None:
            self.progress(done, total, message)

    def audit(self, action: str, object_type: str, object_id: str, detail: dict[str, Any]) -> None:
        """An audit entry with the caller as actor (role recorded beside it)."""
        self.store.audit.append(
            self.caller.name,
            action,
            object_type,
            object_id,
            {**detail, "role": self.caller.role, "via": "tools"},
        )
