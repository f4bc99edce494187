"""The trial config of a self-supervised pre-training trial (`task: pretrain`).

One trial pre-trains a segmentation network on unlabelled volumes (the dataset's training
images plus an optional folder of unlabelled scans), saves the weights with provenance,
then fine-tunes them briefly on `label_fraction` of the labelled training cases and
predicts the evaluation images: the host scores that downstream segmentation (Dice, NSD,
HD95), which is the campaign's objective. `method: none` skips pre-training (the scratch
control of the same fine-tune), so "does pre-training help at 10% labels, and which
method" is one campaign. See docs/pretrain.md.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, model_validator

from medloop.core.fields import Float, Int
from medloop.core.spec_base import Spec

_THRESHOLDS = r"^0?\.\d+(,0?\.\d+){0,5}$"


class PretrainConfig(Spec):
    task: Literal["pretrain"] = "pretrain"
    method: Literal["none", "s2uniseg", "mim"] = Field(
        default="s2uniseg",
        description="s2uniseg: in-loop agglomerative pseudo-masks, student + EMA teacher, query-wise "
        "self-distillation; mim: masked-image modelling; none: no pre-training (the control)",
    )
    # ---- the network (the segmentation network the checkpoint initialises)
    model: Literal["unet", "segresnet"] = "unet"
    spatial_dims: Literal[2, 3] = 3
    base_features: Int = Field(default=8, ge=4, le=320, description="Channels of the first level")
    depth: Int = Field(default=3, ge=2, le=7, description="Resolution levels")
    res_units: Int = Field(default=0, ge=0, le=4, description="UNet residual units per level")
    patch_size: str = Field(
        default="32x32x32",
        pattern=r"^\d+x\d+(x\d+)?$",
        description="Training patch in voxels for pre-training and fine-tuning, e.g. '64x64' or '32x32x32'",
    )
    # ---- pre-training
    iterations: Int = Field(default=100, ge=0, le=1_000_000, description="Pre-training optimizer steps")
    batch_size: Int = Field(default=2, ge=1, le=1024)
    lr: Float = Field(default=1e-3, gt=0, le=10)
    weight_decay: Float = Field(default=1e-5, ge=0, le=10)
    embed_dim: Int = Field(default=32, ge=4, le=1024, description="Channels of the dense features")
    prototypes: Int = Field(default=64, ge=4, le=65_536, description="Outputs of the distillation head")
    ema_momentum: Float = Field(default=0.99, ge=0, lt=1, description="Teacher = m*teacher + (1-m)*student")
    mask_stride: Int = Field(
        default=4, ge=1, le=32, description="Pseudo-masks are made on the features pooled by this factor"
    )
    merge_thresholds: str = Field(
        default="0.9,0.8,0.7",
        pattern=_THRESHOLDS,
        description="Cosine similarity per granularity level (decreasing): groups merge above it",
    )
    max_queries: Int = Field(default=32, ge=1, le=4096, description="Masks (queries) per sample")
    mim_ratio: Float = Field(default=0.6, gt=0, lt=1, description="MIM: share of blocks masked")
    mim_block: Int = Field(default=4, ge=1, le=64, description="MIM: masked block edge in voxels")
    unlabelled: str = Field(
        default="none",
        max_length=4096,
        description="A host folder of unlabelled scans (<case>_0000<ending> per channel) pre-trained on "
        "besides the training images; staged read-only as the job input 'unlabelled'",
    )
    # ---- the downstream fine-tune the host scores
    label_fraction: Float = Field(
        default=1.0, gt=0, le=1, description="Share of the training cases whose labels the fine-tune uses"
    )
    finetune_iterations: Int = Field(default=100, ge=1, le=1_000_000)
    finetune_lr: Float = Field(default=1e-3, gt=0, le=10)
    finetune_mode: Literal["finetune", "freeze_encoder", "adapter"] = "finetune"
    internal_val_fraction: Float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Labelled cases the fine-tune holds out for itself"
    )
    num_threads: Int = Field(default=1, ge=1, le=256, description="CPU threads for torch")

    @model_validator(mode="after")
    def _thresholds_decrease(self) -> PretrainConfig:
        values = self.thresholds()
        if any(a <= b for a, b in itertools.pairwise(values)):
            raise ValueError(f"merge_thresholds {self.merge_thresholds!r} must be strictly decreasing")
        return self

    def thresholds(self) -> tuple[float, ...]:
        return tuple(float(t) for t in self.merge_thresholds.split(","))
