"""The `Store` boundary. SQLite is the default backend; others implement the same protocol.

Writes that belong together (a claim, its evidence and the audit entry) go through one
`transaction()` so a crash never leaves half a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from medloop.core.records import (
    AuditEntry,
    Campaign,
    Claim,
    Evidence,
    Hypothesis,
    Tier,
    Trial,
    TrialResult,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a cursor-paginated listing. Pass `next_cursor` back as `after`."""

    items: list[T]
    next_cursor: str | None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Store(Protocol):
    """Campaigns, cycles, hypotheses, trials, claims and the audit log."""

    def transaction(self) -> AbstractContextManager[None]: ...

    # campaigns
    def add_campaign(self, campaign: Campaign) -> None: ...
    def get_campaign(self, campaign_id: str) -> Campaign: ...
    def list_campaigns(
        self, *, status: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[Campaign]: ...
    def update_campaign(self, campaign_id: str, **changes: Any) -> Campaign: ...
    def record_cycle(self, campaign_id: str, idx: int, summary: dict[str, Any]) -> None: ...
    def list_cycles(self, campaign_id: str) -> list[dict[str, Any]]: ...

    # hypotheses
    def put_hypothesis(self, hypothesis: Hypothesis) -> None: ...
    def get_hypothesis(self, hypothesis_id: str) -> Hypothesis: ...
    def list_hypotheses(self, campaign_id: str, cycle: int | None = None) -> list[Hypothesis]: ...

    # trials
    def put_trial(self, trial: Trial) -> bool: ...
    def get_trial(self, trial_id: str) -> Trial: ...
    def list_trials(
        self,
        *,
        campaign_id: str | None = None,
        hypothesis_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> Page[Trial]: ...
    def set_trial_result(self, trial_id: str, result: TrialResult) -> Trial: ...
    def set_trial_status(self, trial_id: str, status: str) -> None: ...
    def find_trial(self, spec_hash: str, *, status: str = "succeeded") -> Trial | None: ...

    # claims
    def put_claim(self, claim: Claim, evidence: list[Evidence]) -> bool: ...
    def get_claim(self, claim_id: str) -> Claim: ...
    def list_claims(
        self,
        *,
        tiers: list[Tier] | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        campaign_id: str | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> Page[Claim]: ...
    def set_claim_tier(self, claim_id: str, tier: Tier) -> Claim: ...
    def add_evidence(self, evidence: list[Evidence]) -> None: ...
    def list_evidence(self, claim_id: str) -> list[Evidence]: ...
    def claims_citing(self, ref_id: str) -> list[str]: ...

    # audit
    def append_audit(
        self, actor: str, action: str, object_type: str, object_id: str, detail: dict[str, Any]
    ) -> AuditEntry: ...
    def list_audit(
        self, *, object_id: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[AuditEntry]: ...
