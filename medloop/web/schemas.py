"""Request and response bodies of /api/v1. Requests forbid unknown keys, so no body can
carry a tier, a status, an owner or `validated_by`: those change only through actions."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from medloop.core.accounts import ReproductionRequest
from medloop.core.code import CodePoint
from medloop.core.records import AuditEntry, Claim, Hypothesis, Quarantine, Trial
from medloop.core.store.base import ClaimListing, TrialListing
from medloop.web.errors import FieldError, InvalidInput

RATIONALE_MIN = 10


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- cursors


def encode_cursor(kind: str, value: str | int | None) -> str | None:
    if value is None:
        return None
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The store's `after` value inside an opaque cursor; InvalidInput if it is not ours."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    prefix, _, value = raw.partition(":")
    if prefix != kind or not value:
        raise InvalidInput(
            "invalid cursor",
            [FieldError(field="cursor", message="pass back the next_cursor of the previous page unchanged")],
        )
    return value


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """Serialize once with pydantic (non-finite floats become null). Returning a Response
    skips FastAPI's second validation of the response model, which costs more than the
    query on list endpoints; the route's `response_model` still documents the shape."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def listing_response(items: Sequence[Mapping[str, Any]], next_cursor: str | None) -> Response:
    """A page of store listings (plain dicts) as JSON; orjson writes NaN/inf as null."""
    import orjson

    body = orjson.dumps({"items": list(items), "next_cursor": next_cursor})
    return Response(body, media_type="application/json")


# ---------------------------------------------------------------- misc


class Health(Out):
    status: Literal["ok"] = "ok"


class Me(Out):
    name: str
    role: str
    via: str


class UserOut(Out):
    name: str
    role: str
    created_at: str
    disabled_at: str | None


# ---------------------------------------------------------------- campaigns


class CampaignSummary(Out):
    id: str
    name: str
    goal: str
    status: str
    owner: str
    created_at: str
    updated_at: str
    metric: str
    direction: str
    baseline_objective: float | None
    incumbent_objective: float | None
    running: bool = Field(description="A background process is running this campaign now")


class CampaignPage(Out):
    items: list[CampaignSummary]
    next_cursor: str | None


class Budget(Out):
    trials_used: int
    max_trials: int | None
    cycles_done: int
    max_cycles: int
    active_s: float
    max_wall_s: float | None
    used_fraction: float | None = Field(description="Largest used share of any budget (0..1)")


class Curve(Out):
    """Finished trials in the order their results arrived (columns of equal length)."""

    trial_id: list[str]
    arm: list[str]
    objective: list[float | None] = Field(description="null for failed trials")
    best: list[float | None] = Field(description="Best objective so far, in the objective's direction")


class VerdictNote(Out):
    label: str = Field(description="e.g. 'cancelled (budget)'")
    reason: str = Field(description="why the trials did not run, from their results")


class CampaignDetail(Out):
    campaign: CampaignSummary
    spec: dict[str, Any]
    baseline: dict[str, Any]
    incumbent: dict[str, Any]
    summary: dict[str, Any]
    waiting_for: str | None
    cycles: list[dict[str, Any]]
    hypotheses: list[Hypothesis]
    budget: Budget
    trial_counts: dict[str, int]
    best_so_far: Curve
    verdict_notes: dict[str, VerdictNote] = Field(
        default_factory=dict,
        description="hypothesis id -> how to show a 'failed' verdict whose trials never ran (e.g. the budget)",
    )


class CampaignCreate(In):
    """A campaign from YAML text or a named example; `overrides` set form fields
    (`budget.max_trials: "12"`). The owner is the caller."""

    spec_yaml: str | None = Field(default=None, max_length=200_000)
    example: str | None = Field(default=None, max_length=100)
    overrides: dict[str, str] = Field(default_factory=dict)
    launch: bool = Field(default=False, description="Start it in the background at once")


class CodeAdd(In):
    """A person's code hypothesis for a campaign: one module implementing `point`, checked
    on the host, queued for the next cycle, run only in the sandbox."""

    source: str = Field(min_length=1, max_length=64 * 1024, description="Python source of the module")
    point: CodePoint
    rationale: str = Field(default="", max_length=4000, description="Why it should help (reviewers see it)")
    name: str | None = Field(default=None, max_length=120, pattern=r"^[A-Za-z0-9_.-]+$")


class CodeAdded(Out):
    sha256: str
    point: str
    name: str
    author: str
    trusted: bool = Field(description="Shipped with medloop")
    flags: list[str] = Field(description="What a reviewer should look at")
    campaign_id: str | None


class CampaignAction(Out):
    campaign: CampaignSummary
    pid: int | None = Field(default=None, description="Background process started, if any")


class HypothesisPage(Out):
    items: list[Hypothesis]


# ---------------------------------------------------------------- trials


class TrialPage(Out):
    items: list[TrialListing]
    next_cursor: str | None


class TrialDetail(Out):
    trial: Trial
    provenance: dict[str, Any]
    splits: list[str]
    cases: dict[str, list[str]] = Field(description="split -> cases with a prediction to view")


class TrialLogs(Out):
    trial_id: str
    source: Literal["file", "job", "none"] = Field(
        description="file: the job's log file (live while it runs); job: the tail kept with the result"
    )
    lines: list[str]
    truncated: bool


class CaseRow(Out):
    case: str
    site: str | None
    values: dict[str, float | None] = Field(description="metric or metric:class -> value")
    error: str | None


class SiteRow(Out):
    site: str
    n: int
    values: dict[str, float | None]


class MetricsTable(Out):
    split: str
    columns: list[str]
    cases: list[CaseRow]
    sites: list[SiteRow]
    summary: dict[str, float | None]
    implementation: str


class Artifact(Out):
    path: str
    size: int


class ArtifactList(Out):
    items: list[Artifact]


class SliceOut(Out):
    case: str
    split: str
    width: int
    height: int
    depth: int
    z: int
    labels: dict[str, int]
    image: str = Field(description="base64 uint8, row-major (height, width), windowed grey values")
    raw: str | None = Field(
        default=None,
        description="base64 little-endian float32, row-major (height, width): the stored intensities "
        "(Hounsfield units for CT), for window/level presets",
    )
    modality: str = Field(
        default="", description="the image channel's name in dataset.json (CT, MRI, T1, ...)"
    )
    label: str | None = Field(description="base64 uint8 class map, or null if the label is not available")
    prediction: str | None = Field(description="base64 uint8 class map, or null")


# ---------------------------------------------------------------- claims


class ClaimPage(Out):
    items: list[ClaimListing]
    next_cursor: str | None


class EvidenceOut(Out):
    kind: str
    ref_id: str
    role: str
    detail: dict[str, Any]
    trial: TrialListing | None
    provenance: dict[str, Any] | None


class Relation(Out):
    kind: str
    direction: Literal["in", "out"]
    claim_id: str
    tier: str | None
    statement: str | None


class CodeView(Out):
    """A code module as a reviewer sees it: who wrote it, whether it shipped with medloop,
    how its smoke trial went, what is flagged, the source and the diff."""

    sha256: str
    point: str
    name: str
    author: str
    author_kind: str
    trusted: bool
    rationale: str
    flags: list[str]
    smoke: str
    smoke_reason: str
    quarantined: bool
    source: str
    diff: str


class HypothesisDetail(Out):
    hypothesis: Hypothesis
    code: list[CodeView]


class ClaimDetail(Out):
    claim: Claim
    campaign_owner: str | None
    evidence: list[EvidenceOut]
    relations: list[Relation]
    conflicts: list[Relation]
    history: list[AuditEntry]
    reproduction_requests: list[ReproductionRequest]
    quarantined_by: list[str]
    actions: list[str] = Field(description="Review actions the caller may take now")
    code: list[CodeView] = Field(default_factory=list, description="Code modules the claim is about")


class GraphNode(Out):
    id: str
    kind: str
    label: str
    tier: str | None = None


class GraphEdge(Out):
    src: str
    dst: str
    kind: str


class Graph(Out):
    center: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool


class ReviewIn(In):
    rationale: str = Field(
        min_length=RATIONALE_MIN, max_length=5000, description="Why; kept in the audit log"
    )

    @field_validator("rationale")
    @classmethod
    def _words(cls, value: str) -> str:
        if len(value.strip()) < RATIONALE_MIN:
            raise ValueError(f"a rationale of at least {RATIONALE_MIN} characters is required")
        return value.strip()


class ReviewOut(Out):
    claim: Claim
    audit: AuditEntry | None
    request: ReproductionRequest | None = None
    quarantine: Quarantine | None = None


class QuarantineIn(In):
    target: str = Field(min_length=1, max_length=200, description="Trial, campaign, claim or source id")
    rationale: str = Field(
        min_length=RATIONALE_MIN, max_length=5000, description="Why; kept in the audit log"
    )

    @field_validator("rationale")
    @classmethod
    def _words(cls, value: str) -> str:
        return ReviewIn._words(value)


class QuarantineList(Out):
    items: list[Quarantine]


# ---------------------------------------------------------------- audit


class AuditPage(Out):
    items: list[AuditEntry]
    next_cursor: str | None


class AuditCheck(Out):
    ok: bool
    first_bad_seq: int | None
    entries: int
    anchors: int = Field(default=0, description="Anchors checked (from MEDLOOP_AUDIT_ANCHOR_FILE)")
    anchor_error: str | None = Field(default=None, description="Why the log no longer holds an anchor")


class CompareTrial(Out):
    id: str
    arm: str = Field(
        description="control/treatment (a hypothesis's arms; otherwise the first trial is the reference)"
    )
    seed: int
    status: str
    objective: float | None
    label: str


class CompareCurve(Out):
    trial_id: str
    iteration: list[float] = Field(description="x of `loss`: every logged iteration when the job kept them")
    loss: list[float | None]
    val_iteration: list[float]
    val_dice: list[float | None]


class CaseValue(Out):
    site: str | None
    value: float | None
    per_class: dict[str, float | None]


class CompareCase(Out):
    case: str
    site: str | None
    values: dict[str, float | None] = Field(description="trial id -> the metric's foreground mean")


class PairedOut(Out):
    """The engine's paired comparison of the control and treatment trials (seed-averaged per case)."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    p_value: float | None
    test: str
    n_cases: int
    control: list[str]
    treatment: list[str]
    control_per_case: dict[str, float]
    treatment_per_case: dict[str, float]


class CompareOut(Out):
    metric: str
    split: str
    hypothesis_id: str | None
    trials: list[CompareTrial]
    curves: list[CompareCurve]
    cases: list[CompareCase]
    per_class: dict[str, dict[str, float | None]] = Field(description="trial id -> class -> mean over cases")
    per_site: dict[str, dict[str, float | None]] = Field(description="trial id -> site -> mean over cases")
    paired: PairedOut | None
