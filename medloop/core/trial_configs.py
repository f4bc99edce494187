"""Trial configs: what one trial of each task kind is configured by (segmentation, VQA,
audio, promptable); factors of a search space name their fields."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
)

from medloop.core.errors import SpecError
from medloop.core.fields import Float, Int
from medloop.core.pretrain_config import PretrainConfig
from medloop.core.spec_base import Spec

# ---------------------------------------------------------------- trial configs

_CODE_REF = r"^(none|[0-9a-f]{64})$"


# Model-size presets (STU-Net scales a U-Net's width and its residual blocks per stage
# together): first-level channels, and residual units per level for MONAI's UNet; DynUNet
# switches to residual blocks from B up; SegResNet and SwinUNETR scale their width only.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "S": {"base_features": 16, "res_units": 1},
    "B": {"base_features": 32, "res_units": 2},
    "L": {"base_features": 64, "res_units": 3},
    "H": {"base_features": 96, "res_units": 4},
}


class SegConfig(Spec):
    """Everything a segmentation trial's trainer is configured by. Factors name these fields."""

    task: Literal["segmentation"] = "segmentation"
    HASH_OMIT_AT_DEFAULT: ClassVar[frozenset[str]] = frozenset(
        {
            "code_loss",
            "code_augmentation",
            "code_network",
            "code_postprocess",
            "code_lr_schedule",
            "code_tta",
            "model_size",
            "label_fraction",
        }
    )
    model: Literal["unet", "segresnet", "dynunet", "swinunetr"] = "unet"
    model_size: Literal["none", "S", "B", "L", "H"] = Field(
        default="none",
        description="Width/depth preset in the STU-Net spirit (MODEL_SIZES): overrides base_features "
        "and the blocks per level; none = use base_features and res_units as given",
    )
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
    label_fraction: Float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of the training cases whose labels are used (nested subsets per seed: "
        "the 5% subset lies inside the 10% one); a low-label study is a factor of one campaign",
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


class PromptableConfig(Spec):
    """A promptable 3D segmentation trial (SAM-style: image encoder, point/box prompt
    encoder, mask decoder), trained on simulated clicks from the training labels and
    scored by simulated interaction on the host (docs/promptable.md). Factors name these."""

    task: Literal["promptable"] = "promptable"
    model_size: Literal["tiny", "small", "base", "sam_med3d"] = Field(
        default="tiny",
        description="Architecture preset (experiments/promptable/model.py): tiny trains on a CPU in "
        "the demo; sam_med3d is SAM-Med3D-turbo's ViT-B at 128^3 (loads its checkpoints)",
    )
    roi: Literal["volume", "crop"] = Field(
        default="volume",
        description="Model input: the whole volume resized to the preset's cube, or a cube of native "
        "voxels centred on the first prompt (SAM-Med3D)",
    )
    prompt: Literal["points", "box"] = Field(
        default="points", description="First prompt: a click, or a box around the target plus clicks"
    )
    train_clicks: Int = Field(default=4, ge=1, le=20, description="Most clicks simulated per training sample")
    iterations: Int = Field(default=200, ge=1, le=1_000_000, description="Optimizer steps")
    batch_size: Int = Field(default=2, ge=1, le=256)
    lr: Float = Field(default=1e-3, gt=0, le=1)
    weight_decay: Float = Field(default=1e-4, ge=0, le=10)
    init: str = Field(
        default="scratch",
        max_length=4096,
        pattern=r"^(scratch|trial:[A-Za-z0-9_.-]+|file:.+)$",
        description="scratch, trial:<promptable trial id>, or file:<checkpoint> in medloop's or "
        "SAM-Med3D's state-dict layout (.safetensors, .pt, .pth)",
    )
    freeze_encoder: bool = Field(default=False, description="Train only the prompt encoder and decoder")
    eval_clicks: Int = Field(
        default=20,
        ge=10,
        le=20,
        description="Evaluation protocol, not a search factor: clicks simulated per target (NoC cap)",
    )
    num_threads: Int = Field(default=1, ge=1, le=256, description="CPU threads for torch")


class ClassifyConfig(Spec):
    """A volume-level classification trial (3D, multi-channel MRI allowed): a shared 3D
    encoder per channel (modality), adapted by `adapter`, then a linear head; per-case
    probabilities are scored per patient on the host. Factors name these fields."""

    task: Literal["classification"] = "classification"
    model: Literal["unet_encoder", "resnet10"] = Field(
        default="unet_encoder",
        description="Encoder: the down path of MONAI's UNet (the segmentation trials' network, so "
        "`init: trial:<id>` of a segmentation trial loads it) or MONAI's 3D ResNet-10",
    )
    base_features: Int = Field(default=8, ge=4, le=320, description="Channels of the first level")
    depth: Int = Field(default=3, ge=2, le=7, description="Resolution levels of the encoder")
    res_units: Int = Field(default=0, ge=0, le=4, description="UNet residual units per level")
    adapter: Literal["full", "linear", "conv_adapter", "lora", "hyda"] = Field(
        default="full",
        description="How the encoder is adapted: full fine-tuning, linear probe (frozen encoder), "
        "1x1 conv adapters, LoRA on every convolution, or HyDA (hypergraph fusion of the modalities "
        "generating patient-specific kernels applied to the frozen encoder's features)",
    )
    adapter_rank: Int = Field(default=4, ge=1, le=256, description="Rank of LoRA / conv adapters")
    hyda_hidden: Int = Field(default=32, ge=4, le=1024, description="HyDA node and hyperedge width")
    hyda_edges: Int = Field(default=4, ge=1, le=64, description="HyDA learned hyperedges")
    hyda_patches: Int = Field(
        default=2, ge=1, le=8, description="HyDA spatial patch nodes per axis and modality (n^3 each)"
    )
    init: str = Field(
        default="scratch",
        max_length=4096,
        pattern=r"^(scratch|trial:[A-Za-z0-9_.-]+|file:.+)$",
        description="Encoder weights to start from: scratch, trial:<trial id> (e.g. a segmentation "
        "or pre-training trial) or file:<checkpoint path>",
    )
    size: Int = Field(default=32, ge=8, le=512, description="Volumes are resized to size^3 voxels")
    lr: Float = Field(default=1e-3, gt=0, le=10)
    weight_decay: Float = Field(default=1e-4, ge=0, le=10)
    epochs: Int = Field(default=10, ge=1, le=10_000)
    batch_size: Int = Field(default=4, ge=1, le=1024)
    augmentation: Literal["none", "flip"] = Field(default="flip", description="Random axis flips")
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
    | Annotated[AudioConfig, Tag("audio")]
    | Annotated[PretrainConfig, Tag("pretrain")]
    | Annotated[PromptableConfig, Tag("promptable")]
    | Annotated[ClassifyConfig, Tag("classification")],
    Discriminator(_task_of),
]
CONFIG_MODELS: dict[str, type[Spec]] = {
    "segmentation": SegConfig,
    "vqa": VqaConfig,
    "audio": AudioConfig,
    "pretrain": PretrainConfig,
    "promptable": PromptableConfig,
    "classification": ClassifyConfig,
}


def config_model(task: str) -> type[Spec]:
    try:
        return CONFIG_MODELS[task]
    except KeyError:
        raise SpecError(f"task {task!r} has no trial config; known: {sorted(CONFIG_MODELS)}") from None


def make_config(task: str, values: dict[str, Any]) -> TrialConfig:
    """Validate a full trial config dict for `task` (raises pydantic ValidationError)."""
    config = config_model(task).model_validate({**values, "task": task})
    return config  # type: ignore[return-value]
