"""Frozen, versioned records that cross package boundaries and are stored as JSON.

Conventions: times are UTC ISO-8601 strings; metric values are floats with the
direction stated next to them; `schema_version` changes with the shape of a record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medloop.core.ids import canonical_json, sha256_hex
from medloop.core.specs import CampaignSpec, Direction, Scalar, Spec, TaskKind, TrialConfig

ConfigT = TypeVar("ConfigT", bound=Spec)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1


# ---------------------------------------------------------------- trials (job contract)


class DatasetManifest(Record):
    """What a job may know about its dataset. Paths are relative to the spec file's folder.

    Layout inside the sandbox (`/in`): `train/imagesTr`, `train/labelsTr` (train cases),
    `eval/imagesTs` (evaluation cases, images only) and `test/imagesTs` (test images).
    """

    name: str
    checksum: str = Field(description="sha256 over dataset.json and every file's name+size+hash")
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    train_cases: list[str]
    eval_cases: list[str]
    test_cases: list[str] = Field(default_factory=list)
    sites: dict[str, str] = Field(default_factory=dict, description="case id -> site")
    split: dict[str, Any] = Field(default_factory=dict, description="How eval was split off")


class TrialSpec(Record):
    """The job's input (`/in/spec.json`). Its hash identifies a trial across campaigns."""

    task: TaskKind = "segmentation"
    dataset: DatasetManifest
    config: TrialConfig
    seed: int
    max_seconds: float | None = Field(default=None, description="Hint only; the host enforces")
    init_checkpoint: str | None = Field(
        default=None,
        description="Checkpoint to start from, relative to the spec's folder (staged by the host "
        "when config.init is not 'scratch')",
    )
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="Where inputs came from (e.g. parent trial of init_checkpoint)"
    )

    @model_validator(mode="after")
    def _task_matches_config(self) -> TrialSpec:
        if self.config.task != self.task:
            raise ValueError(f"task is {self.task!r} but config.task is {self.config.task!r}")
        return self

    def config_as(self, model: type[ConfigT]) -> ConfigT:
        """The config, narrowed to the config model of the trainer that runs it."""
        if not isinstance(self.config, model):
            raise ValueError(
                f"task {self.task!r}: a {model.__name__} trainer cannot run a {type(self.config).__name__}"
            )
        return self.config

    def spec_hash(self) -> str:
        content = {
            "task": self.task,
            "dataset": self.dataset.model_dump(mode="json"),
            "config": self.config.hash_dump(),
            "seed": self.seed,
        }
        return sha256_hex(canonical_json(content))


class ReportedMetrics(Record):
    """Metrics a job claims for cases whose labels it had (its internal validation)."""

    split: str = "internal_val"
    metric: str = "dice"
    per_case: dict[str, dict[str, float]] = Field(description="case -> class name -> value")


class JobOutcome(Record):
    """`/out/result.json`, written by the job. Untrusted: validated and recomputed on the host."""

    status: Literal["completed", "failed"]
    error: str | None = None
    predictions: dict[str, str] = Field(
        default_factory=dict, description="split -> folder under /out with one label map per case"
    )
    reported: list[ReportedMetrics] = Field(default_factory=list)
    history: list[dict[str, float]] = Field(default_factory=list, description="Per-epoch records")
    efficiency: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    checkpoint: str | None = None
    setup: dict[str, Any] = Field(
        default_factory=dict, description="How the job configured itself: patch, normalisation, init"
    )


# ---------------------------------------------------------------- sandbox jobs


# A GPU as CUDA names it: an index (in PCI bus order), or a "GPU-<uuid>" / "MIG-<uuid>" id.
GpuId = int | str

JobStatus = Literal["succeeded", "failed", "oom", "timed_out", "cancelled", "quota_exceeded"]


class JobLimits(Record):
    timeout_s: float = Field(default=1800.0, gt=0)
    memory_mb: int = Field(default=4096, ge=64)
    cpus: float = Field(default=1.0, gt=0)
    pids: int = Field(default=512, ge=16)
    output_mb: int = Field(default=512, ge=1)
    output_entries: int = Field(default=10_000, ge=1, description="Files and folders the job may create")
    gpu_ids: list[GpuId] = Field(
        default_factory=list, description="Device indexes (PCI bus order), GPU-<uuid> or MIG-<uuid> ids"
    )


class JobSpec(Record):
    """A unit of sandboxed work. `key` is deterministic: campaign, spec hash, attempt."""

    key: str
    command: list[str]
    inputs: dict[str, Path] = Field(description="name -> host path, mounted read-only at <in>/name")
    env: dict[str, str] = Field(default_factory=dict)
    limits: JobLimits = JobLimits()
    image: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Provenance(Record):
    code_version: str
    code_commit: str | None = None
    spec_hash: str | None = None
    dataset_checksum: str | None = None
    seed: int | None = None
    runtime: str
    image: str | None = Field(default=None, description="Image digest, or interpreter + lock hash")
    host: str
    gpu_ids: list[GpuId] = Field(default_factory=list)
    started_at: str
    ended_at: str
    exit_code: int | None = None


class JobResult(Record):
    """What happened to a job. A failed job is data; only infrastructure faults raise."""

    key: str
    status: JobStatus
    exit_code: int | None
    wall_s: float
    out_dir: Path
    log_tail: str = ""
    reason: str | None = None
    provenance: Provenance
    lost: bool = Field(
        default=False,
        description="The job vanished without an outcome (host crash, launcher killed): the "
        "scheduler runs it again as a new attempt; never a scientific result",
    )


# ---------------------------------------------------------------- trial results (host side)

TrialStatus = Literal[
    "pending",
    "running",
    "succeeded",
    "failed",
    "oom",
    "timed_out",
    "cancelled",
    "quota_exceeded",
    "tampered",
]
Arm = Literal["control", "treatment", "baseline", "reproduction", "final", "screen"]


class CaseEvaluation(Record):
    case: str
    site: str | None = None
    metrics: dict[str, dict[str, float | None]] = Field(description="metric -> class -> value")
    error: str | None = Field(
        default=None, description="Why the prediction could not be scored (it then gets the worst values)"
    )


class SplitEvaluation(Record):
    """Metrics recomputed on the host from the job's predictions against held-out labels."""

    split: str
    cases: list[CaseEvaluation]
    summary: dict[str, float | None] = Field(description="metric -> mean over cases of fg mean")
    implementation: str = Field(description="Metric code and version used")
    empty_rule: str = "both_empty_one"
    by_site: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="site -> metric -> mean over the site's cases of fg mean"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Metric settings used (NSD tolerances in mm, HD95 worst value)"
    )


class TrialResult(Record):
    trial_id: str
    spec_hash: str
    status: TrialStatus
    objective: float | None = None
    evaluations: dict[str, SplitEvaluation] = Field(default_factory=dict)
    tamper_gap: float | None = Field(default=None, description="Max |reported - recomputed|")
    history: list[dict[str, float]] = Field(default_factory=list)
    efficiency: dict[str, Any] = Field(default_factory=dict)
    job: JobResult | None = None
    error: str | None = None
    reused_from: str | None = Field(
        default=None,
        description="Trial whose result this copies (same spec hash); its job is not this trial's",
    )
    split_errors: dict[str, str] = Field(
        default_factory=dict, description="split -> why the host could not score it (e.g. the test split)"
    )


class Trial(Record):
    id: str
    campaign_id: str
    hypothesis_id: str | None
    arm: Arm
    spec: TrialSpec
    spec_hash: str
    status: TrialStatus = "pending"
    result: TrialResult | None = None
    created_at: str = Field(default_factory=utcnow)


# ---------------------------------------------------------------- campaigns and hypotheses

# incomplete: the campaign ended, but its final test-split comparison lacks results (why: summary)
CampaignStatus = Literal[
    "created", "running", "paused", "stopping", "stopped", "completed", "incomplete", "failed"
]


class FactorChange(Record):
    factor: str
    from_value: Scalar | None
    to_value: Scalar


class Hypothesis(Record):
    id: str
    campaign_id: str
    cycle: int
    statement: str
    changes: list[FactorChange] = Field(min_length=1)
    expected_effect: float | None = None
    rationale: str = ""
    evidence_ids: list[str] = Field(default_factory=list, description="Claims the plan relied on")
    source: Literal["offline", "llm", "user"] = "offline"
    # cancelled: the budget stopped its trials before they ran (analysis["note"] says which)
    verdict: Literal["pending", "supported", "refuted", "inconclusive", "failed", "cancelled"] = "pending"
    control_trials: list[str] = Field(default_factory=list)
    treatment_trials: list[str] = Field(default_factory=list)
    reproduction_control: list[str] = Field(default_factory=list)
    reproduction_treatment: list[str] = Field(default_factory=list)
    reproduction: Literal["none", "pending", "agreed", "disagreed", "failed"] = "none"
    analysis: dict[str, Any] = Field(default_factory=dict, description="Effect, CI, p, per arm")
    claim_id: str | None = None


class Campaign(Record):
    id: str
    name: str
    spec: CampaignSpec
    status: CampaignStatus = "created"
    owner: str = "local"
    # Who started it (the CLI's MEDLOOP_USER or OS user, the web caller), when the owner
    # was named by someone else (`campaign run --owner`); bound by the same review rules.
    started_by: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
    baseline: dict[str, Scalar] = Field(default_factory=dict)
    incumbent: dict[str, Scalar] = Field(default_factory=dict)
    incumbent_objective: float | None = None
    baseline_objective: float | None = None
    summary: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- claims and evidence

Tier = Literal[
    "proposed",
    "supported",
    "refuted",
    "inconclusive",
    "reproduced",
    "validated",
    "rejected",
    "superseded",
    "quarantined",
    "external",
]


class Effect(Record):
    metric: str
    direction: Direction = Field(description="Which way is better for the metric")
    estimate: float = Field(description="Mean paired difference, treatment - control")
    ci_low: float
    ci_high: float
    ci_level: float = 0.95
    p_value: float
    p_adjusted: float
    test: str
    n_cases: int
    n_seeds: int
    min_effect: float
    alpha: float


class ClaimContext(Record):
    task: TaskKind
    dataset: str
    dataset_checksum: str
    fingerprint: dict[str, float] = Field(default_factory=dict)
    sites: list[str] = Field(default_factory=list)
    base_config: dict[str, Scalar] = Field(default_factory=dict)


class Claim(Record):
    id: str
    campaign_id: str | None
    hypothesis_id: str | None
    statement: str
    changes: list[FactorChange]
    context: ClaimContext
    outcome: str = Field(description="Metric the claim is about")
    effect: Effect | None = None
    tier: Tier = "proposed"
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
    author: str = "agent"


class Evidence(Record):
    claim_id: str
    kind: Literal["trial", "statistic", "claim", "source"]
    ref_id: str
    role: str = Field(description="treatment | control | reproduction | test | derived_from ...")
    detail: dict[str, Any] = Field(default_factory=dict)


AUDIT_GENESIS = "0" * 64
_AUDIT_BODY = {"seq", "ts", "actor", "action", "object_type", "object_id", "detail"}


class AuditEntry(Record):
    seq: int
    ts: str
    actor: str
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str

    @staticmethod
    def digest(prev_hash: str, body: dict[str, Any]) -> str:
        """The chain hash of an entry's body (seq, ts, actor, action, object, detail)."""
        return sha256_hex(prev_hash + canonical_json({k: body[k] for k in sorted(_AUDIT_BODY)}))

    def follows(self, seq: int, prev_hash: str) -> bool:
        """Is this the entry right after (seq, prev_hash): the next number, linked to it,
        its own hash intact? A removed middle entry breaks the numbering even when every
        later hash was recomputed."""
        return (
            self.seq == seq + 1
            and self.prev_hash == prev_hash
            and self.digest(prev_hash, self.model_dump(include=_AUDIT_BODY)) == self.hash
        )


# ---------------------------------------------------------------- knowledge graph model

EntityKind = Literal[
    "dataset",
    "model",
    "loss",
    "augmentation",
    "metric",
    "site",
    "campaign",
    "hypothesis",
    "source",
    "trial",
    "factor",
    "claim",
]
EdgeKind = Literal["supports", "refutes", "derived_from", "reproduces", "contradicts", "about"]


class Entity(Record):
    """A node of the knowledge graph other than a claim (claims live in their own table)."""

    id: str = Field(
        description="Readable, deterministic: `loss:dicece`, `dataset:<name>@<sha12>`, a trial id"
    )
    kind: EntityKind
    name: str
    attrs: dict[str, Any] = Field(default_factory=dict)


class Edge(Record):
    """A typed edge, read as a sentence: `src <kind> dst` (claim derived_from trial)."""

    src: str
    dst: str
    kind: EdgeKind
    src_kind: EntityKind
    dst_kind: EntityKind
    attrs: dict[str, Any] = Field(default_factory=dict)
    seq: int = Field(default=0, description="Store order; indexes follow edges by it")


class ClaimFacts(Record):
    """Immutable, queryable facts of a claim kept beside it for filters and relations."""

    claim_id: str
    task: str
    outcome: str
    dataset: str
    dataset_checksum: str = ""
    intervention: str = Field(description="Canonical key of the change set (orientation-free)")
    orientation: int = Field(description="+1 if the changes run in canonical order, -1 if reversed")
    sign: int = Field(default=0, description="Canonical direction of a significant effect; 0 if none")
    factors: list[str]
    fingerprint: dict[str, float] = Field(default_factory=dict)
    seq: int = 0


class Quarantine(Record):
    id: str
    target_type: Literal["source", "trial", "claim", "campaign", "hypothesis", "code"]
    target_id: str
    why: str
    actor: str
    created_at: str = Field(default_factory=utcnow)
    lifted_at: str | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None
    members: dict[str, str] = Field(default_factory=dict, description="claim id -> tier before")
