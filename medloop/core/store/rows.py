"""Records and row shapes the repositories return besides those of `core.records`: web
accounts, reviewers' reproduction requests, tool job handles, and column-only listings.

Secrets are never stored: tokens and session ids are kept as SHA-256 hashes (256-bit
random values, so a plain hash is enough; no password stretching is needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, TypedDict, TypeVar

from pydantic import Field

from medloop.core.records import Record, Tier, utcnow

T = TypeVar("T")
Role = Literal["viewer", "reviewer", "admin", "agent"]
RequestStatus = Literal["open", "done", "withdrawn"]


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


class User(Record):
    name: str
    role: Role
    created_at: str = Field(default_factory=utcnow)
    disabled_at: str | None = None


class ApiToken(Record):
    """An API token without its secret: `hash` is sha256 of the secret part."""

    id: str
    user: str
    hash: str
    label: str = ""
    created_at: str = Field(default_factory=utcnow)
    expires_at: str | None = None
    revoked_at: str | None = None


class WebSession(Record):
    """A dashboard login. `id_hash` is sha256 of the cookie value; `csrf` goes in forms."""

    id_hash: str
    user: str
    csrf: str
    created_at: str = Field(default_factory=utcnow)
    expires_at: str
    revoked_at: str | None = None


class TokenLogin(NamedTuple):
    """What checking a token needs, in one query (every API request does it)."""

    hash: str
    revoked_at: str | None
    expires_at: str | None
    user: str
    role: str
    disabled_at: str | None


class ReproductionRequest(Record):
    """A reviewer asks for a claim to be re-run on fresh seeds (open -> done | withdrawn)."""

    id: str
    claim_id: str
    actor: str
    rationale: str
    status: RequestStatus = "open"
    created_at: str = Field(default_factory=utcnow)


class ToolJob(Record):
    """A handle a long-running tool returned (a trial, a campaign process)."""

    handle: str
    kind: str
    caller: str
    ref_id: str
    detail: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class TrialListing(TypedDict):
    """A trial's listing columns as a plain dict: listings skip record validation (it
    costs more than the query for a page of 50)."""

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
    """A claim's listing columns, with its effect, as a plain dict."""

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
