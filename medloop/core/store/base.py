"""The `Store` boundary. SQLite is the default backend; others implement the same protocol.

Writes that belong together (a claim, its evidence and the audit entry) go through one
`transaction()` so a crash never leaves half a record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from medloop.core.records import (
    AuditEntry,
    Campaign,
    Claim,
    ClaimFacts,
    Edge,
    Entity,
    Evidence,
    Hypothesis,
    Quarantine,
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


@dataclass(frozen=True)
class VectorRow:
    """A claim statement's embedding: float32 bytes of shape (dim,), L2-normalised."""

    claim_id: str
    embedder: str
    dim: int
    text_hash: str
    vector: bytes


@dataclass(frozen=True)
class RelatedRow:
    """An earlier claim's comparable facts and campaign (for relation checks)."""

    claim_id: str
    task: str
    outcome: str
    dataset: str
    dataset_checksum: str
    fingerprint: dict[str, float]
    sign: int
    campaign_id: str | None = None  # filled only when the query filtered by campaign


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
    def append_audits(
        self, entries: Sequence[tuple[str, str, str, str, dict[str, Any]]]
    ) -> list[AuditEntry]: ...
    def list_audit(
        self, *, object_id: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[AuditEntry]: ...

    # knowledge model (tables of migration 0200; the knowledge package owns their meaning)
    def get_claims(self, claim_ids: Sequence[str]) -> list[Claim]: ...
    def put_claims(self, items: Sequence[tuple[Claim, list[Evidence]]]) -> list[str]: ...
    def claim_tiers(self, claim_ids: Sequence[str] | None = None) -> dict[str, Tier]: ...
    def put_entities(self, entities: Sequence[Entity]) -> int: ...
    def get_entity(self, entity_id: str) -> Entity: ...
    def list_entities(self, *, kind: str | None = None, limit: int = 1000) -> list[Entity]: ...
    def put_edges(self, edges: Sequence[Edge]) -> int: ...
    def list_edges(
        self,
        *,
        after_seq: int = 0,
        src: str | None = None,
        dst: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 10_000,
    ) -> list[Edge]: ...
    def edge_rows(
        self, *, after_seq: int = 0, limit: int = 50_000
    ) -> list[tuple[int, str, str, str, str, str]]: ...
    def edges_into(self, dst_ids: Sequence[str], kinds: Sequence[str]) -> list[tuple[str, str]]: ...
    def max_edge_seq(self) -> int: ...
    def put_claim_facts(self, facts: ClaimFacts) -> int: ...
    def put_claim_facts_many(self, facts: Sequence[ClaimFacts]) -> dict[str, int]: ...
    def list_claim_facts(
        self,
        *,
        after_seq: int = 0,
        intervention: str | None = None,
        outcome: str | None = None,
        claim_ids: Sequence[str] | None = None,
        limit: int = 10_000,
    ) -> list[ClaimFacts]: ...
    def max_claim_seq(self) -> int: ...
    def claim_facts_rows(self) -> list[tuple[str, str, str, list[str]]]: ...
    def evidence_without_edges(self, limit: int = 10_000) -> list[Evidence]: ...
    def related_claims(
        self,
        *,
        intervention: str,
        outcome: str,
        signs: Sequence[int],
        dataset_checksum: str,
        exclude: str,
        other_campaign: str | None = None,
        limit: int = 50,
    ) -> list[RelatedRow]: ...
    def find_claim_ids(
        self,
        *,
        tiers: Sequence[Tier],
        task: str | None = None,
        outcome: str | None = None,
        factors: Sequence[str] = (),
        limit: int = 100,
    ) -> list[str]: ...
    def put_vectors(self, rows: Sequence[VectorRow]) -> None: ...
    def get_vectors(self, claim_ids: Sequence[str]) -> dict[str, VectorRow]: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def put_quarantine(self, quarantine: Quarantine) -> None: ...
    def add_quarantine_members(self, quarantine_id: str, members: dict[str, str]) -> None: ...
    def get_quarantine(self, quarantine_id: str) -> Quarantine: ...
    def list_quarantines(
        self, *, active_only: bool = False, target_id: str | None = None
    ) -> list[Quarantine]: ...
    def lift_quarantine(self, quarantine_id: str, *, actor: str, reason: str) -> None: ...
    def active_quarantine_holds(self, claim_ids: Sequence[str]) -> dict[str, list[str]]: ...
