"""Records around the research records: web accounts, reviewers' reproduction requests,
and the handles long-running tools return. Kept by the store (`store.users`,
`store.reviews`, `store.ledger`, ...); the web and tool layers own their meaning.

Secrets are never stored: tokens and session ids are kept as SHA-256 hashes (256-bit
random values, so a plain hash is enough; no password stretching is needed).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import Field

from medloop.core.records import Record, utcnow

Role = Literal["viewer", "reviewer", "admin", "agent"]
RequestStatus = Literal["open", "done", "withdrawn"]


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
    """A dashboard login. `id_hash` is sha256 of the cookie value; `csrf` goes in forms.
    `token_id`: the API token it was opened with (None for 0.1.0 sessions); the session
    lives no longer than that token."""

    id_hash: str
    user: str
    csrf: str
    created_at: str = Field(default_factory=utcnow)
    expires_at: str
    revoked_at: str | None = None
    token_id: str | None = None


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
