"""The planner boundary: every planner (offline search, LLM) turns a planning context into
hypotheses that stay inside the campaign's search space."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from medloop.core.records import FactorChange
from medloop.core.specs import CampaignSpec, Scalar
from medloop.knowledge.base import RetrievedClaim


class HistoryRow(BaseModel):
    """One tested hypothesis, compactly, for the planner's view of the campaign so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cycle: int
    changes: dict[str, Scalar]
    before: dict[str, Scalar | None] = Field(default_factory=dict, description="Values before the change")
    verdict: str
    estimate: float | None = None
    p_adjusted: float | None = None
    reproduction: str = "none"


class PlanningContext(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    campaign_id: str
    cycle: int
    spec: CampaignSpec
    incumbent: dict[str, Scalar] = Field(description="Full trial config of the incumbent")
    incumbent_objective: float | None
    history: list[HistoryRow]
    retrieved: list[RetrievedClaim]
    tested_configs: list[dict[str, Any]] = Field(description="Configs already run in this campaign")
    measured: list[tuple[dict[str, Any], float | None]] = Field(
        default_factory=list, description="(config, mean objective over its eval runs) in this campaign"
    )
    runs: list[tuple[dict[str, Any], int, float]] = Field(
        default_factory=list,
        description="(config, seed, objective) of every finished run of this campaign: all arms, all "
        "seeds, reproduction runs included (the proposer's observations)",
    )
    n: int = Field(description="How many hypotheses to propose at most")


class HypothesisDraft(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    statement: str
    changes: list[FactorChange] = Field(min_length=1)
    expected_effect: float | None = None
    rationale: str = ""
    evidence_ids: list[str] = Field(default_factory=list)


class Planner(Protocol):
    name: str

    def propose(self, context: PlanningContext) -> list[HypothesisDraft]:
        """At most `context.n` hypotheses, each changing factors of the incumbent within
        the search space. May return fewer (or none when the space is exhausted)."""
        ...

    def state(self) -> dict[str, Any]:
        """What must survive a restart (LLM spend, tokens, fallbacks); JSON-serialisable."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class Proposer(Protocol):
    """Model-based search over the whole search space (the boundary a sampler sits behind).

    Every run of the campaign is an observation (all arms, all seeds, screening and
    reproduction runs): `tell` it, then `ask` for configs the model expects to be good.
    Configs are full trial configs; only the search-space factors are the model's."""

    name: str

    def tell(
        self, config: dict[str, Any], value: float, *, seed: int | None = None, fidelity: float = 1.0
    ) -> None:
        """One finished run: its config and objective (seed and fidelity for the record)."""
        ...

    def prior(self, config: dict[str, Any], weight: float) -> None:
        """A config that knowledge from elsewhere rates (weight > 0, higher first): asked
        before the model's own proposals, then judged by this campaign's runs like any other."""
        ...

    def ask(self, n: int, *, base: dict[str, Any], exclude: set[str]) -> list[dict[str, Any]]:
        """Up to n distinct configs (base with search-space factors set), none of whose
        `config_key` is in `exclude`. Fewer when the space is exhausted."""
        ...
