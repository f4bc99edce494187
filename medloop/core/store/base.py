"""The store boundary: one repository per aggregate, each a small Protocol, and the `Store`
that holds them (`store.trials.get(id)`, `store.claims.put(...)`) with `transaction()`.

Writes that belong together (a claim, its evidence and the audit entry) go through one
`transaction()`, so a crash never leaves half a record. `put` methods are idempotent on
content-derived ids and say what was new; the agent relies on that after a crash.
Listings page by cursor: pass `next_cursor` back as `after`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from typing_extensions import TypedDict  # pydantic reads it (API schemas) on Python 3.11

from medloop.core.accounts import (
    ApiToken,
    ReproductionRequest,
    RequestStatus,
    TokenLogin,
    ToolJob,
    User,
    WebSession,
)
from medloop.core.code import CodeModule, CodeState, SmokeStatus
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
EdgeRow = tuple[int, str, str, str, str, str]  # seq, src, dst, kind, src_kind, dst_kind
AuditItem = tuple[str, str, str, str, dict[str, Any]]  # actor, action, object_type, object_id, detail
Filter = str | None  # `column = value` when given


@dataclass(frozen=True)
class Page(Generic[T]):
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


class TrialListing(TypedDict):
    """A trial's listing columns as a plain dict (validating records costs more than the
    query for a page of 50)."""

    id: str
    campaign_id: str
    hypothesis_id: str | None
    arm: str
    seed: int
    status: str
    objective: float | None
    created_at: str
    updated_at: str


class ClaimListing(TypedDict):
    id: str
    campaign_id: str | None
    hypothesis_id: str | None
    tier: Tier
    outcome: str
    dataset: str
    statement: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_adjusted: float | None
    author: str
    created_at: str
    updated_at: str


class Campaigns(Protocol):
    def add(self, campaign: Campaign) -> None: ...
    def get(self, campaign_id: str) -> Campaign: ...
    def list(self, *, status: Filter = None, after: str | None = None, limit: int = 100) -> Page[Campaign]:
        """Newest first."""

    def update(self, campaign_id: str, **changes: Any) -> Campaign: ...


class Cycles(Protocol):
    """A campaign's cycle summaries and the hypotheses it tested (in insertion order)."""

    def record(self, campaign_id: str, idx: int, summary: dict[str, Any]) -> None: ...
    def list(self, campaign_id: str) -> builtins.list[dict[str, Any]]: ...
    def put_hypothesis(self, hypothesis: Hypothesis) -> None: ...
    def get_hypothesis(self, hypothesis_id: str) -> Hypothesis: ...
    def hypotheses(self, campaign_id: str, cycle: int | None = None) -> builtins.list[Hypothesis]: ...


class Trials(Protocol):
    def put(self, trial: Trial) -> bool:
        """Insert; False (and nothing changed) if the id exists."""

    def get(self, trial_id: str) -> Trial: ...
    def list(
        self, *, campaign_id: Filter = None, hypothesis_id: Filter = None, status: Filter = None,
        after: str | None = None, limit: int = 1000,
    ) -> Page[Trial]: ...  # fmt: skip
    def set_result(self, trial_id: str, result: TrialResult) -> Trial: ...
    def set_status(self, trial_id: str, status: str) -> None: ...
    def find(self, spec_hash: str, *, status: str = "succeeded") -> Trial | None:
        """The oldest trial of this spec in this status (a re-run is reused, not repeated)."""


class Listings(Protocol):
    """Column-only reads for the dashboard and the API, in the order of `Trials.list` and
    `Claims.list` (no record JSON parsed)."""

    def trials(
        self, *, campaign_id: Filter = None, hypothesis_id: Filter = None, status: Filter = None,
        after: str | None = None, limit: int = 50,
    ) -> Page[TrialListing]: ...  # fmt: skip
    def claims(
        self, *, tiers: Sequence[str] | None = None, dataset: Filter = None, outcome: Filter = None,
        campaign_id: Filter = None, after: str | None = None, limit: int = 50,
    ) -> Page[ClaimListing]: ...  # fmt: skip
    def trial_counts(self, campaign_id: str) -> dict[str, int]: ...
    def trial_curve(self, campaign_id: str) -> list[tuple[str, str, str, float | None]]:
        """(id, arm, status, objective) of finished trials in the order results arrived."""

    def recent_trials(self, campaign_id: str, limit: int = 30) -> list[TrialListing]: ...
    def campaign_progress(self, campaign_id: str) -> dict[str, Any]:
        """A cheap fingerprint of a campaign's state: changes whenever anything visible does."""


class Claims(Protocol):
    def put(self, items: Sequence[tuple[Claim, Sequence[Evidence]]]) -> builtins.list[str]:
        """Insert claims with their evidence; ids that exist are skipped. Returns the new ids."""

    def get(self, claim_id: str) -> Claim: ...
    def get_many(self, claim_ids: Sequence[str]) -> builtins.list[Claim]:
        """In the order asked; unknown ids are left out."""

    def list(
        self, *, tiers: Sequence[Tier] | None = None, dataset: Filter = None, outcome: Filter = None,
        campaign_id: Filter = None, after: str | None = None, limit: int = 1000,
    ) -> Page[Claim]: ...  # fmt: skip
    def set_tier(self, claim_id: str, tier: Tier) -> Claim:
        """Low-level; callers go through the knowledge lifecycle, which audits."""

    def tiers(self, claim_ids: Sequence[str] | None = None) -> dict[str, Tier]:
        """claim id -> tier, for these ids or every claim."""


class EvidenceLinks(Protocol):
    def add(self, evidence: Sequence[Evidence]) -> None:
        """Attach evidence to existing claims (NotFoundError otherwise, nothing written). Idempotent."""

    def list(self, claim_id: str) -> builtins.list[Evidence]: ...
    def citing(self, ref_id: str) -> builtins.list[str]:
        """Ids of the claims with evidence that refers to `ref_id`."""

    def without_edges(self, limit: int = 10_000) -> builtins.list[Evidence]:
        """Trial/source/claim evidence of claims with facts but no graph edge yet."""


class Graph(Protocol):
    """Knowledge graph nodes other than claims, and typed edges in `seq` order."""

    def put_entities(self, entities: Sequence[Entity]) -> int: ...
    def get_entity(self, entity_id: str) -> Entity: ...
    def put_edges(self, edges: Sequence[Edge]) -> int:
        """Insert edges (unique on src, dst, kind); returns how many were new."""

    def edges(
        self, *, after_seq: int = 0, src: Filter = None, dst: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None, limit: int | None = None,
    ) -> list[Edge]:  # fmt: skip
        """`dst`: edges into any of these nodes."""

    def edge_rows(self, *, after_seq: int = 0, limit: int = 50_000) -> list[EdgeRow]:
        """Without attrs: what a graph index needs to follow the table cheaply."""

    def max_seq(self) -> int: ...


class Facts(Protocol):
    """Queryable facts per claim, in ingest order (`seq`)."""

    def put(self, facts: Sequence[ClaimFacts]) -> dict[str, int]:
        """Record facts once per claim; returns claim id -> seq (the existing one on a repeat)."""

    def list(
        self, *, after_seq: int = 0, intervention: Filter = None, outcome: Filter = None,
        claim_ids: Sequence[str] | None = None, limit: int = 10_000,
    ) -> builtins.list[ClaimFacts]: ...  # fmt: skip
    def rows(self) -> builtins.list[tuple[str, str, str, builtins.list[str]]]:
        """(claim id, task, outcome, factors) of every claim, without building records."""

    def max_seq(self) -> int: ...
    def related(
        self, *, intervention: str, outcome: str, signs: Sequence[int], dataset_checksum: str, exclude: str,
        other_campaign: str | None = None, limit: int = 50,
    ) -> builtins.list[RelatedRow]:  # fmt: skip
        """Claims about the same change and outcome with a sign in `signs` (and from another
        campaign than `other_campaign`, if given): same dataset first, then newest."""

    def find_ids(
        self, *, tiers: Sequence[Tier], task: Filter = None, outcome: Filter = None, factors: Sequence[str] = (),
        limit: int = 100,
    ) -> builtins.list[str]:  # fmt: skip
        """Claims in `tiers` matching the structured filter (any of `factors`), newest first."""


class Vectors(Protocol):
    def put(self, rows: Sequence[VectorRow]) -> None: ...
    def get(self, claim_ids: Sequence[str]) -> dict[str, VectorRow]: ...


class Meta(Protocol):
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str) -> None: ...


class Quarantines(Protocol):
    def put(self, quarantine: Quarantine) -> None: ...
    def add_members(self, quarantine_id: str, members: dict[str, str]) -> None: ...
    def get(self, quarantine_id: str) -> Quarantine: ...
    def list(self, *, active_only: bool = False, target_id: Filter = None) -> builtins.list[Quarantine]: ...
    def lift(self, quarantine_id: str, *, actor: str, reason: str) -> None: ...
    def holds(self, claim_ids: Sequence[str]) -> dict[str, builtins.list[str]]:
        """claim id -> ids of the active quarantines that hold it."""


class CodeModules(Protocol):
    """Checked code modules of code hypotheses, content-addressed (sha256 of the source)."""

    def put(self, module: CodeModule, source: str) -> bool:
        """Insert; False (nothing changed) if the hash exists. StoreError if the source
        does not hash to `module.sha256`."""

    def get(self, sha256: str) -> tuple[CodeModule, str]:
        """The record and the source; NotFoundError if unknown."""

    def list(self, *, point: Filter = None, campaign_id: Filter = None) -> builtins.list[CodeModule]:
        """By point, then name; with `campaign_id`, that campaign's modules and those written
        for any campaign (the shipped moves)."""

    def state(self, sha256: str) -> CodeState: ...
    def set_smoke(self, sha256: str, status: SmokeStatus, reason: str = "") -> None: ...


class Audit(Protocol):
    """Append-only, hash-chained: hash = sha256(prev_hash + canonical entry)."""

    def append(
        self, actor: str, action: str, object_type: str, object_id: str, detail: dict[str, Any]
    ) -> AuditEntry: ...
    def append_many(self, entries: Sequence[AuditItem]) -> builtins.list[AuditEntry]: ...
    def list(
        self, *, object_id: Filter = None, after: int = 0, limit: int = 1000
    ) -> builtins.list[AuditEntry]: ...
    def verify(self) -> tuple[bool, int | None]:
        """Recompute the chain (seq 1..n without gaps, each hash linked): (ok, first bad seq)."""

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry: what an anchor outside the database records."""


class Users(Protocol):
    def add(self, user: User) -> None: ...
    def get(self, name: str) -> User: ...
    def list(self) -> builtins.list[User]: ...
    def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (stamped now) or enable a user; NotFoundError if unknown."""

    def rate_hit(self, user: str, action: str, *, limit: int, window_s: float, peek: bool = False) -> float:
        """Count one `action` if fewer than `limit` happened in the last `window_s` seconds:
        0.0 if counted, else the seconds until one frees up. Shared by every process.
        `peek`: count nothing, only say how long until one would be counted."""


class Tokens(Protocol):
    def add(self, token: ApiToken) -> None: ...
    def get(self, token_id: str) -> ApiToken: ...
    def list(self, user: Filter = None) -> builtins.list[ApiToken]: ...
    def revoke(self, token_id: str) -> None: ...
    def login(self, token_id: str) -> TokenLogin | None: ...


class Sessions(Protocol):
    def add(self, session: WebSession) -> None: ...
    def get(self, id_hash: str) -> WebSession: ...
    def list(self, user: Filter = None) -> builtins.list[WebSession]: ...
    def revoke(self, id_hash: str) -> None: ...
    def end(self, *, user: str | None = None, token_id: str | None = None) -> int:
        """Revoke every open session of one user or one token; returns how many."""


class Reviews(Protocol):
    """Reviewers' reproduction requests."""

    def add(self, request: ReproductionRequest) -> None: ...
    def get(self, request_id: str) -> ReproductionRequest: ...
    def list(
        self, *, claim_id: Filter = None, status: Filter = None
    ) -> builtins.list[ReproductionRequest]: ...
    def close(self, request_id: str, status: RequestStatus = "done") -> None:
        """open -> done | withdrawn; again with the same status is a no-op, another a conflict."""


class ToolLedger(Protocol):
    """Per-caller charges (for budgets) and job handles of the tool library."""

    def charge(self, caller: str, resource: str, ref_id: str, amount: float, *, settle: bool = False) -> bool:
        """Idempotent per (caller, resource, ref_id) unless `settle`, which replaces the
        amount (a reservation becoming the measured value). True if a row was written."""

    def usage(self, caller: str, *, since: str = "") -> dict[str, float]:
        """resource -> total charged since the ISO time `since` ('' = ever)."""

    def charges(self, caller: str, resource: str) -> dict[str, float]: ...
    def put_job(self, job: ToolJob) -> bool: ...
    def get_job(self, handle: str) -> ToolJob: ...
    def list_jobs(
        self, *, caller: Filter = None, kind: Filter = None, limit: int = 1000
    ) -> builtins.list[ToolJob]: ...


class Store(Protocol):
    campaigns: Campaigns
    cycles: Cycles
    trials: Trials
    listings: Listings
    claims: Claims
    evidence: EvidenceLinks
    graph: Graph
    facts: Facts
    vectors: Vectors
    meta: Meta
    quarantines: Quarantines
    code: CodeModules
    audit: Audit
    users: Users
    tokens: Tokens
    sessions: Sessions
    reviews: Reviews
    ledger: ToolLedger

    def transaction(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...
