"""Campaign specs: what a researcher writes in YAML. The spec base and search-space factors
live in spec_base.py, the trial configs in trial_configs.py; both are re-exported here.

All models forbid unknown keys, so a typo is an error that names the key, not a silently
ignored setting. `load_campaign_spec` turns any problem into one `SpecError` line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    model_validator,
)

from medloop.core.code import CodePoint
from medloop.core.errors import SpecError
from medloop.core.fields import GOAL_TEXT, Float, Int, NameText, UserPath
from medloop.core.pretrain_config import PretrainConfig
from medloop.core.spec_base import (
    Categorical,
    Direction,
    Factor,
    FloatRange,
    IntRange,
    Scalar,
    Spec,
    TaskKind,
)
from medloop.core.task_metrics import AUDIO_BASE_METRICS, AUDIO_SNRS, EFFICIENCY_FIGURES, METRICS
from medloop.core.trial_configs import (
    CONFIG_MODELS,
    VQA_CATEGORY_FIELDS,
    VQA_METRIC,
    AudioConfig,
    ClassifyConfig,
    PromptableConfig,
    SegConfig,
    TrialConfig,
    VqaConfig,
    config_model,
    make_config,
)

__all__ = [
    "AUDIO_BASE_METRICS",
    "AUDIO_SNRS",
    "CONFIG_MODELS",
    "EFFICIENCY_FIGURES",
    "METRICS",
    "VQA_CATEGORY_FIELDS",
    "VQA_METRIC",
    "YEAR_S",
    "AudioConfig",
    "Budget",
    "CampaignSpec",
    "Categorical",
    "ClassifyConfig",
    "CodeSpec",
    "DatasetRef",
    "Direction",
    "ExecutorSpec",
    "Factor",
    "FloatRange",
    "IntRange",
    "Objective",
    "PlannerSpec",
    "PretrainConfig",
    "PromptableConfig",
    "SandboxSpec",
    "Scalar",
    "Seconds",
    "SegConfig",
    "Spec",
    "TaskKind",
    "TrialConfig",
    "ValidationPolicy",
    "VqaConfig",
    "config_model",
    "format_validation_error",
    "load_campaign_spec",
    "make_config",
    "parse_campaign_spec",
    "parse_duration",
]

# ---------------------------------------------------------------- campaign spec


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> Any:
    """Accept seconds as a number or strings such as '90s', '10m', '4h'."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90, '90s', '10m' or '4h', got {str(value).lower()}")
    if isinstance(value, str):
        if len(value) > 40:  # bounds the regex's work too
            raise ValueError(f"{value[:40]!r}... is not a duration such as 90, '90s', '10m' or '4h'")
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 90, '90s', '10m' or '4h'")
        return float(match.group(1)) * _UNIT_S[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
YEAR_S = 365 * 86_400


class DatasetRef(Spec):
    path: UserPath = Field(
        description="nnU-Net v2 raw dataset folder (with dataset.json); for task vqa also a converted "
        "VQA folder (with vqa.json, see `medloop vqa convert`)"
    )
    eval_fraction: Float = Field(default=0.3, gt=0, lt=1, description="Cases held out for search")
    split_seed: Int = Field(default=12345, ge=0, le=2**32 - 1)
    split: Literal["holdout", "kfold", "leave_site_out"] = Field(
        default="holdout",
        description="How the evaluation cases are chosen: a site-stratified holdout, one fold of "
        "a seeded k-fold by case, or every case of one site (out-of-domain evaluation)",
    )
    folds: Int = Field(default=5, ge=2, le=50, description="k for split: kfold")
    fold: Int = Field(default=0, ge=0, le=1000, description="Which fold (kfold), or which site by index")
    held_out_site: NameText | None = Field(default=None, description="The site for split: leave_site_out")


class Constraint(Spec):
    """A bound every run of a configuration must meet to become the incumbent, e.g.
    `{metric: inference_s_per_case_max, max: 60}` (FLARE-style: at most 60 s per case)."""

    metric: NameText = Field(description="An efficiency figure (EFFICIENCY_FIGURES) or a recomputed metric")
    max: Float | None = None
    min: Float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric}: give max, min or both")
        return self

    def violation(self, value: float | None) -> str | None:
        """Why `value` breaks this constraint, or None when it meets it (a missing value breaks it)."""
        if value is None:
            return f"{self.metric} not recorded"
        if self.max is not None and value > self.max:
            return f"{self.metric} {value:g} > {self.max:g}"
        if self.min is not None and value < self.min:
            return f"{self.metric} {value:g} < {self.min:g}"
        return None


class Objective(Spec):
    metric: NameText = "dice"
    direction: Direction = "maximize"
    split: Literal["val"] = "val"
    aggregation: Literal["mean", "median"] = "mean"
    constraints: list[Constraint] = Field(
        default_factory=list,
        max_length=20,
        description="Bounds a configuration's runs must all meet to become the incumbent "
        '("maximise DSC with inference <= 60 s per case")',
    )


class ValidationPolicy(Spec):
    # >= 2: with one run per arm a seed's luck cannot be told from an effect.
    seeds_per_arm: Int = Field(default=3, ge=2, le=50)
    alpha: Float = Field(default=0.05, gt=0, lt=1)
    min_effect: Float = Field(default=0.0, ge=0, le=1_000_000, description="Pre-registered minimum effect")
    test: Literal["wilcoxon", "permutation", "mcnemar"] = Field(
        default="wilcoxon",
        description="Case-level paired test; mcnemar: exact sign test (McNemar's on 0/1 outcomes such as VQA items)",
    )
    correction: Literal["holm", "none"] = "holm"
    bootstrap_resamples: Int = Field(default=10_000, ge=100, le=1_000_000)
    reproduction_seeds: Int = Field(
        default=3,
        ge=0,
        le=50,
        description="Fresh seeds per arm to reproduce a supported claim (>= 3; 0 turns reproduction "
        "off, and then no change ever becomes the incumbent)",
    )
    stages: Int = Field(
        default=1,
        ge=1,
        le=5,
        description="Looks of the sequential test: a change still undecided after seeds_per_arm "
        "seeds per arm gets seeds_per_arm more, up to this many times, under the alpha spending "
        "of `spending` (adding seeds does not inflate the error); 1 = a fixed design",
    )
    spending: Literal["obrien_fleming", "pocock"] = Field(
        default="obrien_fleming",
        description="How the sequential test spends alpha over its looks (Lan-DeMets): "
        "obrien_fleming keeps nearly all of it for the last look (two looks at 0.05: 0.0056, "
        "0.0478); pocock spreads it evenly (0.0310, 0.0277), so a clear gain is certified at "
        "the first look and one that needs every seed pays a little at the last",
    )
    deferred_looks: Int = Field(
        default=0,
        ge=0,
        le=4,
        description="Planned looks after the in-cycle ones (`stages`), each taken only when a change "
        "that ended undecided is again the best screened candidate against the same incumbent: it "
        "resumes with seeds_per_arm more seeds per arm. The alpha spending plans all stages + "
        "deferred_looks looks from the start, so the in-cycle looks are stricter (screening mode)",
    )
    reproduce: Literal["all", "best"] = Field(
        default="all",
        description="Which supported changes of a cycle are reproduced: all of them, or only the "
        "best (the one that could become the incumbent; cheaper)",
    )
    human_review: bool = False


class Budget(Spec):
    max_trials: Int | None = Field(default=None, ge=1, le=100_000)
    max_wall: Seconds | None = Field(default=None, le=YEAR_S)
    max_gpu_hours: Float | None = Field(default=None, gt=0, le=1_000_000)
    max_llm_usd: Float | None = Field(default=None, ge=0, le=1_000_000)
    max_llm_tokens: Int | None = Field(
        default=None, ge=0, le=10**12, description="Also a cap for unpriced models"
    )
    max_cycles: Int = Field(default=5, ge=1, le=10_000)
    patience: Int = Field(default=2, ge=1, le=10_000, description="Stop after this many cycles without gain")
    patience_trials: Int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Convergence rule in trials: stop after this many trials without a better "
        "screened value (the best mean of any config run so far); replaces `patience` when set",
    )


class ExecutorSpec(Spec):
    kind: Literal["local", "ray", "table"] = "local"
    slots: Int = Field(default=1, ge=1, le=1024)
    address: NameText | None = None
    table: UserPath | None = None
    shared: list[UserPath] = Field(
        default_factory=list,
        max_length=64,
        description="Folders every Ray node mounts at the same path (a shared filesystem): "
        "job inputs under them reach the nodes by path, never through Ray's object store",
    )


class SandboxSpec(Spec):
    runtime: Literal["local", "docker"] = "local"
    image: NameText | None = None
    timeout: Seconds = Field(default=1800.0, le=30 * 86_400)
    memory_mb: Int = Field(default=4096, ge=64, le=4 * 1024 * 1024)
    cpus: Float = Field(default=1.0, gt=0, le=1024)
    gpus: Int = Field(default=0, ge=0, le=64)
    output_limit_mb: Int = Field(default=512, ge=1, le=1024 * 1024)
    output_entries: Int = Field(
        default=10_000, ge=1, le=10_000_000, description="Files and folders a job may create (inodes)"
    )
    allow_untrusted_code: bool = Field(
        default=False,
        description="Let the local runtime run code hypotheses that did not ship with medloop "
        "(the Docker runtime always may: it has no network and sees no host files)",
    )


class PlannerSpec(Spec):
    kind: Literal["offline", "llm"] = "offline"
    model: NameText | None = None
    hypotheses_per_cycle: Int = Field(default=2, ge=1, le=20)
    screening: Int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Screening runs per cycle: configs the model-based proposer (Optuna TPE, "
        "fitted to every run) suggests, each trained once with one seed; they never make claims. "
        "The best screened config is certified (paired, sequential, reproduced) only when its "
        "screened value beats the certified incumbent by validation.min_effect. 0 = off: every "
        "hypothesis is certified directly",
    )


class CodeSpec(Spec):
    """Code hypotheses (core/code.py): which extension points the planners may change with
    a code module, which shipped code moves the offline planner offers, and the smoke
    trial every module must survive before its first real trial."""

    points: list[CodePoint] = Field(
        default_factory=list, max_length=6, description="Extension points open to code hypotheses"
    )
    moves: list[NameText] = Field(
        default_factory=list,
        max_length=50,
        description="Shipped code moves to offer (library file names); empty: every move at the points",
    )
    smoke: bool = Field(default=True, description="Run a very short trial before a module's first trial")
    smoke_timeout: Seconds = Field(default=300.0, le=86_400, description="Wall limit of a smoke trial")
    write_attempts: Int = Field(
        default=3, ge=1, le=10, description="LLM planner: tries per module (each failed check is fed back)"
    )
    modules_per_cycle: Int = Field(
        default=1, ge=0, le=5, description="LLM planner: modules written per cycle"
    )
    write_tokens: Int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="LLM planner: tokens the write-code step may spend (inside budget.max_llm_*)",
    )


class CampaignSpec(Spec):
    """A goal-driven campaign, as written in YAML."""

    name: str = Field(min_length=1, max_length=120)
    goal: str = Field(min_length=1, max_length=GOAL_TEXT)
    task: TaskKind = "segmentation"
    dataset: DatasetRef
    objective: Objective = Objective()
    baseline: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=100,
        description="Trial config fields of the baseline. `auto: true` starts from the dataset's "
        "nnU-Net-style plans (the other keys override them); `baseline: auto` is short for that.",
    )
    search_space: dict[str, Factor] = Field(min_length=1, max_length=100)
    validation: ValidationPolicy = ValidationPolicy()
    budget: Budget = Budget()
    executor: ExecutorSpec = ExecutorSpec()
    sandbox: SandboxSpec = SandboxSpec()
    planner: PlannerSpec = PlannerSpec()
    code: CodeSpec = CodeSpec()

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("dataset"), str):
            data = {**data, "dataset": {"path": data["dataset"]}}
        if isinstance(data, dict) and data.get("baseline") == "auto":
            data = {**data, "baseline": {"auto": True}}
        return data

    @property
    def baseline_auto(self) -> bool:
        return self.baseline.get("auto") is True

    @property
    def baseline_overrides(self) -> dict[str, Scalar]:
        return {k: v for k, v in self.baseline.items() if k != "auto"}

    @model_validator(mode="after")
    def _objective_is_computed(self) -> CampaignSpec:
        known = METRICS.get(self.task, {})
        metric = self.objective.metric
        if self.task == "vqa":  # accuracy or accuracy:<field>=<value>, checked below
            known = {metric: "maximize"}
        if metric not in known:
            raise ValueError(
                f"objective.metric: {metric!r} is not computed for {self.task}; use one of {sorted(known)}"
            )
        if self.objective.direction != known[metric]:
            raise ValueError(f"objective.direction: {metric} is better when it is {known[metric]}d")
        for c in self.objective.constraints:
            if c.metric not in known and c.metric not in EFFICIENCY_FIGURES:
                raise ValueError(
                    f"objective.constraints: {c.metric!r} is neither a metric of {self.task} nor a "
                    f"recorded figure; use one of {sorted({*known, *EFFICIENCY_FIGURES})}"
                )
        if 0 < self.validation.reproduction_seeds < 3:
            raise ValueError(
                "validation.reproduction_seeds: use 0 (no reproduction) or at least 3 fresh seeds"
            )
        if self.validation.deferred_looks and not self.planner.screening:
            # Only promotion from screening resumes a parked pair: without it the deferred
            # looks would only make the in-cycle looks stricter.
            raise ValueError(
                "validation.deferred_looks: needs planner.screening > 0 (a deferred look resumes "
                "when screening promotes the same candidate again)"
            )
        return self

    @model_validator(mode="after")
    def _factors_are_config_fields(self) -> CampaignSpec:
        model = config_model(self.task)
        fields = set(model.model_fields) - {"task"}
        for name in [*self.baseline_overrides, *self.search_space]:
            if name not in fields:
                raise ValueError(f"{name!r} is not a trial config field; allowed: {sorted(fields)}")
        base = self.baseline_config()
        for name, factor in self.search_space.items():
            values: list[Scalar] = (
                list(factor.choices) if isinstance(factor, Categorical) else [factor.low, factor.high]
            )
            for value in values:
                try:
                    model.model_validate({**base.model_dump(), name: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"]
                    raise ValueError(f"search_space.{name}: value {value!r}: {msg}") from None
            for other, allowed in (factor.when or {}).items():
                if other not in self.search_space:
                    raise ValueError(f"search_space.{name}.when names unknown factor {other!r}")
                target = self.search_space[other]
                if isinstance(target, Categorical):
                    bad = [v for v in allowed if v not in target.choices]
                    if bad:
                        raise ValueError(
                            f"search_space.{name}.when.{other}: {bad} not among {target.choices}"
                        )
        if self.code.points and self.task != "segmentation":
            raise ValueError(f"code.points: code hypotheses run in segmentation trials, not {self.task}")
        if self.task == "vqa" and not VQA_METRIC.match(self.objective.metric):
            raise ValueError(
                f"objective.metric {self.objective.metric!r} is not a VQA metric; use accuracy or "
                f"accuracy:<field>=<value> with field one of {', '.join(VQA_CATEGORY_FIELDS)}"
            )
        return self

    def baseline_config(self, planned: dict[str, Scalar] | None = None) -> TrialConfig:
        """The baseline trial config; with `auto`, `planned` (the dataset plans) underlies it."""
        base = dict(planned or {}) if self.baseline_auto else {}
        return make_config(self.task, {**base, **self.baseline_overrides})


# ---------------------------------------------------------------- loading


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: `source: key.path: message` for the first error (the rest are counted)."""
    errors = exc.errors()
    first = errors[0]
    parts = [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    # the tag of a trial config union (config.segmentation.lr) is not a key the user wrote
    parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "config" and p in CONFIG_MODELS)]
    loc = ".".join(parts)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see examples/ for the allowed keys)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{loc}: " if loc else ""
    return f"{source}: {where}{msg}{more}"


def load_campaign_spec(path: Path, *, check_dataset: bool = True) -> CampaignSpec:
    """Read and validate a campaign YAML file. Raises SpecError with one clear line."""
    from medloop.core import safeyaml

    if not path.is_file():
        raise SpecError(f"{path}: campaign file not found", hint="pass the path to a YAML file")
    data = safeyaml.read(path).data  # size, aliases, depth, duplicate keys: refused here
    return parse_campaign_spec(data, source=str(path), check_dataset=check_dataset)


def parse_campaign_spec(data: Any, *, source: str, check_dataset: bool = True) -> CampaignSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of keys at the top level")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from None
    if check_dataset and spec.executor.kind == "table":
        table = spec.executor.table
        if table is None or not table.is_file():
            raise SpecError(f"{source}: executor.table: {table} does not exist")
    elif check_dataset:
        ds = spec.dataset.path
        if spec.task == "vqa" and (ds / "vqa.json").is_file():
            return spec  # a converted VQA dataset (`medloop vqa convert`)
        if spec.task == "audio":
            if not (ds / "manifest.csv").is_file():
                what = "does not exist" if not ds.exists() else "has no manifest.csv"
                raise SpecError(
                    f"{source}: dataset.path: {ds} {what}",
                    hint="create one with `medloop dataset synth DIR --kind speech` (see docs/audio.md)",
                )
            return spec
        if not (ds / "dataset.json").is_file():
            what = "does not exist" if not ds.exists() else "has no dataset.json"
            raise SpecError(
                f"{source}: dataset.path: {ds} {what}",
                hint="create one with `medloop dataset synth DIR` or point at an nnU-Net raw dataset",
            )
    return spec
