"""Campaign specs, search spaces and trial configs: what a researcher writes in YAML.

All models forbid unknown keys, so a typo is an error that names the key, not a silently
ignored setting. `load_campaign_spec` turns any problem into one `SpecError` line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from medloop.core.errors import SpecError
from medloop.core.fields import GOAL_TEXT, Float, Int, NameText, UserPath

Scalar = str | int | float | bool
TaskKind = Literal["segmentation", "vqa", "audio"]
Direction = Literal["maximize", "minimize"]


class Spec(BaseModel):
    """Base of user-written specs: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Trial-config fields added after trials were first recorded: left out of a trial's
    # spec hash while they hold their default, so a config written before the field
    # existed keeps its hash (reuse of runs, resumed campaigns, replay tables).
    HASH_OMIT_AT_DEFAULT: ClassVar[frozenset[str]] = frozenset()

    def hash_dump(self) -> dict[str, Any]:
        """The JSON dump a spec hash is computed from (see HASH_OMIT_AT_DEFAULT)."""
        data = self.model_dump(mode="json")
        fields = type(self).model_fields
        for name in self.HASH_OMIT_AT_DEFAULT:
            if name in data and data[name] == fields[name].default:
                del data[name]
        return data


# ---------------------------------------------------------------- search space


class Categorical(Spec):
    type: Literal["categorical"] = "categorical"
    choices: list[Scalar] = Field(min_length=1, max_length=1000)
    when: dict[str, list[Scalar]] | None = Field(
        default=None, description="Active only when every named factor takes one of these values"
    )


class IntRange(Spec):
    type: Literal["int"]
    low: Int
    high: Int
    log: bool = False
    when: dict[str, list[Scalar]] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low >= self.high or (self.log and self.low <= 0):
            raise ValueError("needs low < high (and low > 0 when log is true)")
        return self


class FloatRange(Spec):
    type: Literal["float"]
    low: Float
    high: Float
    log: bool = False
    when: dict[str, list[Scalar]] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low >= self.high or (self.log and self.low <= 0):
            raise ValueError("needs low < high (and low > 0 when log is true)")
        return self


def _shorthand_factor(value: Any) -> Any:
    # `loss: [dice, dicece]` in YAML is a categorical factor.
    if isinstance(value, list):
        return {"type": "categorical", "choices": value}
    return value


Factor = Annotated[
    Annotated[Categorical | IntRange | FloatRange, Field(discriminator="type")],
    BeforeValidator(_shorthand_factor),
]


# ---------------------------------------------------------------- trial configs

_CODE_REF = r"^(none|[0-9a-f]{64})$"


class SegConfig(Spec):
    """Everything a segmentation trial's trainer is configured by. Factors name these fields."""

    task: Literal["segmentation"] = "segmentation"
    HASH_OMIT_AT_DEFAULT: ClassVar[frozenset[str]] = frozenset(
        {"code_loss", "code_augmentation", "code_network", "code_postprocess", "code_lr_schedule", "code_tta"}
    )
    model: Literal["unet", "segresnet", "dynunet", "swinunetr"] = "unet"
    spatial_dims: Literal[2, 3] = 2
    base_features: Int = Field(default=16, ge=4, le=320, description="Channels of the first level")
    depth: Int = Field(default=4, ge=2, le=7, description="Resolution levels")
    loss: Literal["dice", "dicece", "dicefocal"] = "dicece"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: Float = Field(default=1e-3, gt=0, le=10)
    weight_decay: Float = Field(default=1e-5, ge=0, le=10)
    iterations: Int = Field(default=200, ge=1, le=1_000_000, description="Optimizer steps")
    batch_size: Int = Field(default=8, ge=1, le=1024)
    augmentation: Literal["none", "light", "nnunet"] = "none"
    internal_val_fraction: Float = Field(
        default=0.2, ge=0.0, lt=1.0, description="Training cases the job holds out for itself"
    )
    num_threads: Int = Field(default=1, ge=1, le=256, description="CPU threads for torch")
    res_units: Int = Field(default=0, ge=0, le=4, description="UNet residual units per level")
    patch_size: str = Field(
        default="auto",
        pattern=r"^(auto|\d+x\d+(x\d+)?)$",
        description="Training patch in voxels, e.g. '64x64' or '96x96x64'; auto: whole 2D slice, "
        "or the nnU-Net-style plan for 3D",
    )
    epoch_iterations: Int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description="Iterations per epoch: validation, checkpoint, early stopping",
    )
    early_stopping: Int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Stop after this many epochs without a better internal val Dice; 0 = off",
    )
    schedule: Literal["auto", "poly", "cosine", "constant"] = Field(
        default="auto", description="LR schedule; auto = poly for sgd (nnU-Net), constant for adamw"
    )
    momentum: Float = Field(default=0.99, ge=0, lt=1, description="SGD Nesterov momentum (nnU-Net: 0.99)")
    amp: bool = Field(default=True, description="Mixed precision (CUDA only; ignored on CPU)")
    tta: bool = Field(default=False, description="Mirroring test-time augmentation at inference")
    sw_overlap: Float = Field(default=0.5, ge=0, lt=1, description="Sliding-window overlap")
    target_spacing: str = Field(
        default="none",
        pattern=r"^(none|auto|\d+(\.\d+)?x\d+(\.\d+)?(x\d+(\.\d+)?)?)$",
        description="Resample to this spacing (mm) before training: none, auto (nnU-Net rule) or '1.0x1.0x2.5'",
    )
    init: str = Field(
        default="scratch",
        max_length=4096,
        pattern=r"^(scratch|trial:[A-Za-z0-9_.-]+|file:.+)$",
        description="Weights to start from: scratch, trial:<trial id> or file:<checkpoint path>",
    )
    init_mode: Literal["finetune", "freeze_encoder", "adapter"] = Field(
        default="finetune", description="How an initialised model is trained"
    )
    # Code hypotheses (core/code.py): the sha256 of a checked module run at that extension
    # point inside the sandbox, or "none". Staged by the host as /in/code/<sha256>.py.
    code_loss: str = Field(default="none", pattern=_CODE_REF, description="Loss module, or none")
    code_augmentation: str = Field(default="none", pattern=_CODE_REF, description="Augmentation module")
    code_network: str = Field(default="none", pattern=_CODE_REF, description="Network builder module")
    code_postprocess: str = Field(default="none", pattern=_CODE_REF, description="Post-processing module")
    code_lr_schedule: str = Field(default="none", pattern=_CODE_REF, description="LR schedule module")
    code_tta: str = Field(default="none", pattern=_CODE_REF, description="Test-time augmentation module")

    def code_refs(self) -> dict[str, str]:
        """Extension point -> sha256 of the modules this config runs."""
        return {
            name.removeprefix("code_"): value
            for name, value in self.model_dump().items()
            if name.startswith("code_") and value != "none"
        }


# Category fields of a VQA item (the GMAI-MMBench "lexical tree").
VQA_CATEGORY_FIELDS = ("task", "modality", "department", "granularity")
_VQA_FIELD = "(?:" + "|".join(VQA_CATEGORY_FIELDS) + ")"
# Objective metrics of a VQA campaign: overall accuracy or the accuracy of one category.
VQA_METRIC = re.compile(rf"^accuracy(?::{_VQA_FIELD}=[^,=]+)?$")


class VqaConfig(Spec):
    """A VLM trial: fine-tune (or not) a vision-language model on VQA items, then answer the
    evaluation items. Factors name these fields."""

    task: Literal["vqa"] = "vqa"
    model_path: str = Field(
        default="tiny",
        min_length=1,
        max_length=4096,
        description="'tiny' (a small randomly initialised LLaVA-style model built in code, for tests "
        "and demos) or a folder with Hugging Face weights and processor (never downloaded)",
    )
    method: Literal["none", "lora", "full"] = Field(
        default="lora", description="none: evaluate the model as it is; lora (peft) or full fine-tuning"
    )
    lora_rank: Int = Field(default=8, ge=1, le=512)
    lora_alpha: Int = Field(
        default=16, ge=1, le=65_536, description="LoRA scaling numerator (scale = alpha / rank)"
    )
    lora_dropout: Float = Field(default=0.0, ge=0, lt=1)
    lr: Float = Field(default=1e-4, gt=0, le=1)
    weight_decay: Float = Field(default=0.0, ge=0, le=10)
    epochs: Int = Field(default=1, ge=0, le=1000, description="Passes over the training items")
    batch_size: Int = Field(default=8, ge=1, le=1024)
    image_size: Int = Field(
        default=32, ge=8, le=4096, description="Images are resized to this square size (px) before the model"
    )
    train_categories: str = Field(
        default="all",
        max_length=2000,
        pattern=rf"^(all|{_VQA_FIELD}=[^,=]+(,{_VQA_FIELD}=[^,=]+)*)$",
        description="Training items to use: all, or comma-separated field=value terms (an item is used "
        "when it matches any), e.g. 'task=organ_recognition,task=laterality'",
    )
    captions: bool = Field(default=False, description="Also train on the image-caption pairs")
    max_train_items: Int = Field(
        default=0, ge=0, le=1_000_000_000, description="Cap on training items; 0 = all"
    )
    max_new_tokens: Int = Field(default=8, ge=1, le=4096)
    eval_batch_size: Int = Field(default=16, ge=1, le=1024)
    item_timeout: Float = Field(default=60.0, gt=0, le=86_400, description="Seconds one answer may take")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bfloat16 on CUDA, float32 on CPU"
    )
    num_threads: Int = Field(default=1, ge=1, le=256, description="CPU threads for torch")


class AudioConfig(Spec):
    """A speech-biomarker trial (e.g. depression from speech): acoustic features per
    segment, a small network (optionally with spiking layers), trained on segments and
    scored per subject on clean and noisy copies of the evaluation recordings."""

    task: Literal["audio"] = "audio"
    features: Literal["logmel", "mfcc", "contrast", "chroma", "zcr", "rms_pitch", "all"] = Field(
        default="logmel", description="Acoustic feature family (librosa); all = the six stacked"
    )
    model: Literal["cnn", "crnn", "hstn"] = Field(
        default="cnn", description="cnn; crnn (conv + BiLSTM); hstn (hierarchical spatial-temporal)"
    )
    neuron: Literal["none", "lif", "arslif"] = Field(
        default="none",
        description="Spiking layer after the front-end: none, LIF, or adaptive-rate smooth LIF",
    )
    aggregation: Literal["mean", "vote"] = Field(
        default="mean", description="Subject decision from its segments: mean probability or majority vote"
    )
    augmentation: Literal["none", "noise", "gain", "stretch", "all"] = Field(
        default="none", description="Training-time augmentation (audiomentations)"
    )
    sample_rate: Int = Field(default=16000, ge=4000, le=96000, description="Audio is resampled to this (Hz)")
    segment_seconds: Float = Field(default=1.0, gt=0.1, le=30, description="Segment length (s)")
    n_mels: Int = Field(default=40, ge=8, le=256)
    hidden: Int = Field(default=32, ge=4, le=1024, description="Channels / hidden units")
    epochs: Int = Field(default=8, ge=1, le=1000)
    batch_size: Int = Field(default=32, ge=1, le=4096)
    lr: Float = Field(default=2e-3, gt=0, le=1)
    weight_decay: Float = Field(default=1e-4, ge=0, le=1)
    num_threads: Int = Field(default=1, ge=1, le=256, description="CPU threads for torch")


def _task_of(value: Any) -> str:
    # Configs stored before `task` was a discriminator are segmentation configs.
    if isinstance(value, dict):
        return str(value.get("task", "segmentation"))
    return str(getattr(value, "task", "segmentation"))


# The trial config of every task kind. A new task adds its config model here and to the
# TrialConfig union (discriminated on `task`); agents use `config_model(task)`.
TrialConfig = Annotated[
    Annotated[SegConfig, Tag("segmentation")]
    | Annotated[VqaConfig, Tag("vqa")]
    | Annotated[AudioConfig, Tag("audio")],
    Discriminator(_task_of),
]
CONFIG_MODELS: dict[str, type[Spec]] = {"segmentation": SegConfig, "vqa": VqaConfig, "audio": AudioConfig}


def config_model(task: str) -> type[Spec]:
    try:
        return CONFIG_MODELS[task]
    except KeyError:
        raise SpecError(f"task {task!r} has no trial config; known: {sorted(CONFIG_MODELS)}") from None


def make_config(task: str, values: dict[str, Any]) -> TrialConfig:
    """Validate a full trial config dict for `task` (raises pydantic ValidationError)."""
    config = config_model(task).model_validate({**values, "task": task})
    return config  # type: ignore[return-value]


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


# Metrics a campaign can optimise, per task, with the direction that is better. The host
# recomputes exactly these from raw predictions (a typo must not become an empty campaign).
# Audio: subject-level metrics at one noise level (`f1@5db`, pooled over the noise kinds)
# or the normalised area under the robustness curve over all levels (`f1_auc`).
AUDIO_BASE_METRICS = ("accuracy", "precision", "recall", "f1", "auroc")
AUDIO_SNRS = ("clean", "20db", "10db", "5db", "0db")
METRICS: dict[str, dict[str, Direction]] = {
    "segmentation": {"dice": "maximize", "nsd": "maximize", "hd95": "minimize"},
    "audio": {
        **{f"{m}@{snr}": "maximize" for m in AUDIO_BASE_METRICS for snr in AUDIO_SNRS},
        **{f"{m}_auc": "maximize" for m in AUDIO_BASE_METRICS},
    },
}


class Objective(Spec):
    metric: NameText = "dice"
    direction: Direction = "maximize"
    split: Literal["val"] = "val"
    aggregation: Literal["mean", "median"] = "mean"


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
        "seeds per arm gets seeds_per_arm more, up to this many times, under O'Brien-Fleming-type "
        "alpha spending (adding seeds does not inflate the error); 1 = a fixed design",
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
        if 0 < self.validation.reproduction_seeds < 3:
            raise ValueError(
                "validation.reproduction_seeds: use 0 (no reproduction) or at least 3 fresh seeds"
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
