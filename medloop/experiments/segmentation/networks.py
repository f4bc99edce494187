"""Network construction from a SegConfig: UNet, SegResNet, DynUNet (nnU-Net topology,
deep supervision) and SwinUNETR, in 2D or 3D."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medloop.core.specs import SegConfig
from medloop.core.trial_configs import MODEL_SIZES
from medloop.experiments.extensions import active


def dynunet_topology(
    patch: Sequence[int], spacing: Sequence[float], max_levels: int
) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net's rule for kernels and strides: halve an axis while it is at least 8 voxels
    and its spacing is within 2x of the finest axis; axes much coarser than the finest get
    1-voxel kernels until downsampling of the others catches up. Returns (kernels,
    strides), one entry per level (the first stride is 1)."""
    sizes = [float(s) for s in patch]
    spacings = [float(s) for s in spacing]
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * len(sizes)]
    while len(strides) < max_levels:
        finest = min(spacings)
        ratio = [sp / finest for sp in spacings]
        stride = [2 if r <= 2 and sz >= 8 and sz % 2 == 0 else 1 for r, sz in zip(ratio, sizes, strict=True)]
        if all(s == 1 for s in stride):
            break
        kernels.append([3 if r <= 2 else 1 for r in ratio])
        strides.append(stride)
        sizes = [sz / st for sz, st in zip(sizes, stride, strict=True)]
        spacings = [sp * st for sp, st in zip(spacings, stride, strict=True)]
    kernels.append([3] * len(sizes))
    return kernels, strides


def sized(config: SegConfig) -> SegConfig:
    """The config with its model-size preset (if any) applied to width and blocks."""
    if config.model_size == "none":
        return config
    return config.model_copy(update=MODEL_SIZES[config.model_size])


def count_flops(model: nn.Module, in_channels: int, patch: Sequence[int], device: torch.device) -> int:
    """Floating-point operations of one forward pass on one patch (torch's FLOP counter;
    a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, in_channels, *patch), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


SWIN_MIN_PATCH = 64  # SwinUNETR halves 5 times; its bottleneck needs more than one voxel


def patch_divisor(config: SegConfig, patch: Sequence[int], spacing: Sequence[float]) -> list[int]:
    """Per axis, the factor the input size must be a multiple of for this network."""
    if config.model == "swinunetr":
        return [32] * len(patch)
    if config.model == "dynunet":
        _, strides = dynunet_topology(patch, spacing, config.depth)
        return [math.prod(s[axis] for s in strides) for axis in range(len(patch))]
    return [2 ** (config.depth - 1)] * len(patch)


def min_patch(config: SegConfig) -> int:
    """Smallest patch edge the network accepts when training."""
    return SWIN_MIN_PATCH if config.model == "swinunetr" else 1


def build_network(
    config: SegConfig, in_channels: int, out_channels: int, patch: Sequence[int], spacing: Sequence[float]
) -> nn.Module:
    """The network named by `config.model`. `patch` and `spacing` shape DynUNet's topology."""
    custom = active("network")  # a code hypothesis's network builder (core/code.py)
    if custom is not None:
        built: nn.Module = custom(config, in_channels, out_channels, list(patch), list(spacing))
        return built
    dims = config.spatial_dims
    bf = config.base_features
    if config.model == "unet":
        from monai.networks.nets.unet import UNet

        return UNet(
            spatial_dims=dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=[bf * 2**i for i in range(config.depth)],
            strides=[2] * (config.depth - 1),
            num_res_units=config.res_units,
            norm="instance",
        )
    if config.model == "segresnet":
        from monai.networks.nets.segresnet import SegResNet

        return SegResNet(
            spatial_dims=dims,
            init_filters=bf,
            in_channels=in_channels,
            out_channels=out_channels,
            blocks_down=tuple([1, 2, 2, 4, 4, 4, 4][: config.depth]),
            blocks_up=tuple([1] * (config.depth - 1)),
            num_groups=math.gcd(bf, 8),
        )
    if config.model == "dynunet":
        from monai.networks.nets.dynunet import DynUNet

        kernels, strides = dynunet_topology(patch, spacing, config.depth)
        levels = len(strides)
        cap = 320 if dims == 3 else 512  # nnU-Net's feature cap
        return DynUNet(
            spatial_dims=dims,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernels,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=[min(bf * 2**i, cap) for i in range(levels)],
            norm_name=("INSTANCE", {"affine": True}),
            deep_supervision=levels > 2,
            deep_supr_num=max(1, min(levels - 2, 3)),
            res_block=config.model_size in ("B", "L", "H"),
        )
    if config.model == "swinunetr":
        from monai.networks.nets.swin_unetr import SwinUNETR

        return SwinUNETR(
            in_channels=in_channels,
            out_channels=out_channels,
            feature_size=12 * max(1, math.ceil(bf / 12)),  # must be a multiple of 12
            spatial_dims=dims,
            use_v2=True,
        )
    raise ValueError(f"unknown model {config.model!r}")
