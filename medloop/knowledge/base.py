"""Knowledge boundaries: embedders, the two indexes, and the `KnowledgeBase` facade that
agents, tools and the web use. SQL (the `Store`) is the truth; indexes can be rebuilt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from medloop.core.records import Claim, Evidence, Quarantine, Tier

Vector = NDArray[np.float32]

# Tiers whose claims may steer planning as evidence; the rest are labelled suggestions.
EVIDENCE_TIERS: tuple[Tier, ...] = ("reproduced", "validated")
SUGGESTION_TIERS: tuple[Tier, ...] = ("supported", "inconclusive", "refuted", "external", "proposed")


class Embedder(Protocol):
    name: str

    @property
    def dim(self) -> int:
        """Vector length (stored with the index; a mismatch is refused)."""
        ...

    def embed(self, texts: Sequence[str]) -> Vector:
        """(N, dim) float32, L2-normalised."""
        ...


class VectorIndex(Protocol):
    """Claim statement vectors. Metadata values are str or list[str]; `where` takes the
    subset of Chroma's filter syntax both backends implement: `{"f": v}` (equality),
    `{"f": {"$in": [...]}}`, `{"f": {"$contains": v}}` (list fields), `$and` / `$or`."""

    def upsert(self, ids: Sequence[str], vectors: Vector, metadatas: Sequence[dict[str, Any]]) -> None: ...

    def query(
        self, vector: Vector, *, k: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Top-k (id, cosine similarity), best first."""
        ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def ids(self) -> set[str]: ...

    def clear(self) -> None:
        """Drop every vector (before a rebuild)."""
        ...


class GraphIndex(Protocol):
    """Typed directed graph; an edge reads `src kind dst` (claim derived_from trial).

    `watermark` is the last store edge seq the graph contains; `save` persists both."""

    watermark: int

    def upsert_node(self, node_id: str, kind: str, **attrs: Any) -> None: ...

    def upsert_edge(self, src: str, dst: str, kind: str, **attrs: Any) -> None: ...

    def neighbors(
        self, node_id: str, *, kinds: Sequence[str] | None = None, direction: str = "both"
    ) -> list[tuple[str, str]]:
        """(neighbor id, edge kind) pairs."""
        ...

    def descendants(
        self, node_id: str, *, kinds: Sequence[str] | None = None, direction: str = "out"
    ) -> set[str]:
        """Nodes reachable from `node_id` along edges of `kinds` ("out": src -> dst; "in":
        dst -> src, e.g. everything derived_from a trial)."""
        ...

    def nodes(self, kind: str | None = None) -> set[str]: ...

    def remove_node(self, node_id: str) -> None: ...

    def clear(self) -> None: ...

    def save(self) -> None: ...


class RetrievalQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    task: str | None = None
    outcome: str | None = None
    factors: list[str] = Field(default_factory=list)
    fingerprint: dict[str, float] = Field(default_factory=dict)
    k: int = 20
    purpose: Literal["planning", "browse"] = "planning"


class RetrievedClaim(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    claim: Claim
    score: float
    role: Literal["evidence", "suggestion"]
    reasons: list[str] = Field(description="Why this claim was returned, for humans and prompts")


class KnowledgeBase(Protocol):
    def add_claim(self, claim: Claim, evidence: list[Evidence], *, actor: str) -> Claim:
        """Write SQL first (idempotent on claim id), then the indexes."""
        ...

    def retrieve(self, query: RetrievalQuery) -> list[RetrievedClaim]: ...

    def add_evidence(self, claim_id: str, evidence: list[Evidence], *, actor: str) -> Claim:
        """Attach more evidence (reproduction runs) with its graph edges; audited."""
        ...

    def transition(self, claim_id: str, tier: Tier, *, actor: str, role: str, reason: str) -> Claim:
        """Change a claim's tier under the lifecycle rules; audited. Raises TrustError."""
        ...

    def reconcile(self) -> dict[str, int]:
        """Bring the indexes in line with SQL (after a crash); returns counts fixed."""
        ...


class Conflict(BaseModel):
    """Two claims about the same intervention and outcome in comparable contexts whose
    significant effects point in opposite directions (linked `contradicts`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    a: Claim
    b: Claim
    intervention: str
    outcome: str
    active: bool = Field(description="Both claims are still live (not quarantined/rejected/superseded)")


class KnowledgeAdmin(Protocol):
    """Curation beyond `KnowledgeBase` (reviewers, the web API, the CLI). Kept apart so
    a planner-side fake need not implement it."""

    def add_evidence(self, claim_id: str, evidence: list[Evidence], *, actor: str) -> Claim: ...

    def quarantine(self, target: str, *, why: str, actor: str, role: str) -> Quarantine:
        """Demote every claim derived from a source, trial, campaign or claim; audited."""
        ...

    def unquarantine(self, quarantine_id: str, *, actor: str, role: str, reason: str) -> Quarantine: ...

    def conflicts(self, *, include_inactive: bool = False) -> list[Conflict]: ...

    def rebuild(self, *, reembed: bool = False) -> dict[str, int]:
        """Drop the vector and graph indexes and rebuild them from SQL."""
        ...
