"""The classifier: one 3D encoder shared by every channel (modality), run on each
channel separately (as a single-channel foundation encoder is), pooled per modality,
concatenated and read by a linear head. An optional HyDA adapter fuses the modalities'
feature maps and rewrites them with patient-specific kernels before pooling.

Encoders: the down path of MONAI's UNet (the segmentation trials' network; its weights
load from a segmentation checkpoint by name) or MONAI's 3D ResNet-10 (width scaled by
base_features / 64).
"""

from __future__ import annotations

import torch
from torch import nn

from medloop.core.specs import ClassifyConfig
from medloop.experiments.classification.hyda import HyDA


class UNetEncoder(nn.Module):
    """The levels of MONAI's UNet down path, named `levels.<i>`; `sources[i]` is the name
    of that level inside the UNet (`model.0`, `model.1.submodule.0`, ...)."""

    def __init__(self, config: ClassifyConfig) -> None:
        super().__init__()
        from monai.networks.nets.unet import UNet

        bf = config.base_features
        unet = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            channels=[bf * 2**i for i in range(config.depth)],
            strides=[2] * (config.depth - 1),
            num_res_units=config.res_units,
            norm="instance",
        )
        levels: list[nn.Module] = []
        self.sources: list[str] = []
        node: nn.Module = unet.model
        prefix = "model"
        while isinstance(node, nn.Sequential) and len(node) == 3:
            levels.append(node[0])
            self.sources.append(f"{prefix}.0")
            node = getattr(node[1], "submodule", node[1])
            prefix = f"{prefix}.1.submodule"
        levels.append(node)  # the bottom block
        self.sources.append(prefix)
        self.levels = nn.ModuleList(levels)
        self.out_channels = bf * 2 ** (config.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for level in self.levels:
            x = level(x)
        return x

    def rename(self, key: str) -> str | None:
        """A segmentation checkpoint's key as this encoder names it (None: not encoder)."""
        for i, source in enumerate(self.sources):
            if key.startswith(source + "."):
                return f"levels.{i}.{key[len(source) + 1 :]}"
        return None


class ResNetEncoder(nn.Module):
    def __init__(self, config: ClassifyConfig) -> None:
        super().__init__()
        from monai.networks.nets.resnet import resnet10

        widen = config.base_features / 64
        self.net = resnet10(spatial_dims=3, n_input_channels=1, widen_factor=widen, feed_forward=False)
        self.out_channels = int(512 * widen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.act(n.bn1(n.conv1(x))))
        out: torch.Tensor = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return out

    def rename(self, key: str) -> str | None:
        return key if key.startswith("net.") else None


Encoder = UNetEncoder | ResNetEncoder


class VolumeClassifier(nn.Module):
    """(B, M, D, H, W) volumes -> (B, n_classes) logits."""

    def __init__(self, config: ClassifyConfig, n_modalities: int, n_classes: int = 2) -> None:
        super().__init__()
        self.encoder: Encoder = (
            UNetEncoder(config) if config.model == "unet_encoder" else ResNetEncoder(config)
        )
        channels = self.encoder.out_channels
        self.hyda: HyDA | None = None
        extra = 0
        if config.adapter == "hyda":
            self.hyda = HyDA(
                channels,
                n_modalities,
                hidden=config.hyda_hidden,
                edges=config.hyda_edges,
                patches=config.hyda_patches,
            )
            extra = config.hyda_hidden
        # mean and max pooling per modality: after instance normalisation a channel's mean
        # over space is ~0, and a focal finding (a lesion) shows in the max
        self.head = nn.Linear(2 * channels * n_modalities + extra, n_classes)
        self.frozen_encoder = False

    def train(self, mode: bool = True) -> VolumeClassifier:
        super().train(mode)
        if self.frozen_encoder:  # frozen normalisation statistics stay as loaded
            self.encoder.eval()
        return self

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, D, H, W) -> (B, M, C, d, h, w): the shared encoder on every modality."""
        b, m = x.shape[:2]
        f = self.encoder(x.reshape(b * m, 1, *x.shape[2:]))
        out: torch.Tensor = f.reshape(b, m, *f.shape[1:])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_maps(x)
        parts: list[torch.Tensor] = []
        if self.hyda is not None:
            f, z = self.hyda(f)
            parts.append(z)
        pooled = torch.cat([f.mean(dim=(3, 4, 5)), f.amax(dim=(3, 4, 5))], dim=2).flatten(1)  # (B, M*2C)
        out: torch.Tensor = self.head(torch.cat([pooled, *parts], dim=1))
        return out
