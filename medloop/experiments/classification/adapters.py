"""How a classifier's encoder is adapted, and what trains:

- full: every parameter trains (full fine-tuning);
- linear: the encoder is frozen; only the head trains (linear probe);
- conv_adapter: frozen encoder + a zero-initialised 1x1 bottleneck beside every convolution
  (segmentation/transfer.py's ConvAdapter) + head;
- lora: frozen encoder + LoRA on every convolution: y = conv(x) + up(down(x)) with `down` a
  rank-r convolution of the same kernel, stride and padding and `up` a zero-initialised
  1x1 (the low-rank update of the kernel, as LoRA does for convolutions) + head;
- hyda: frozen encoder + the HyDA dynamic adapter (hyda.py) + head.

Also: loading encoder weights from a segmentation, pre-training or classification
checkpoint, and parameter counts (total and trainable) for the trial's result.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medloop.core.specs import ClassifyConfig
from medloop.experiments.classification.networks import VolumeClassifier
from medloop.experiments.segmentation.transfer import ConvAdapter


class LoRAConv(nn.Module):
    """The low-rank update of a convolution's kernel, run as two convolutions."""

    def __init__(self, conv: nn.Conv3d, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        k: Any = conv.kernel_size
        self.down = nn.Conv3d(
            conv.in_channels,
            rank,
            kernel_size=k,
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
            bias=False,
        )
        self.up = nn.Conv3d(rank, conv.out_channels, kernel_size=1, bias=False)
        nn.init.zeros_(self.up.weight)  # starts as the frozen network exactly
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.up(self.down(x)) * self.scale
        return out


def attach(module: nn.Module, make: Any) -> nn.ModuleDict:
    """Add `make(conv)` beside every ungrouped Conv3d of `module` (a forward hook adds its
    output); registered on `module` as `side`, so they save and train with it."""
    side = nn.ModuleDict()
    for name, conv in list(module.named_modules()):
        if isinstance(conv, nn.Conv3d) and conv.groups == 1:
            extra = make(conv)
            side[name.replace(".", "__")] = extra

            def hook(
                mod: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor, a: nn.Module = extra
            ) -> torch.Tensor:
                add: torch.Tensor = a(args[0])
                for axis, size in enumerate(output.shape[2:], start=2):  # odd sizes: crop
                    add = add.narrow(axis, 0, size)
                return output + add

            conv.register_forward_hook(hook)
    module.add_module("side", side)
    return side


def configure(model: VolumeClassifier, config: ClassifyConfig) -> dict[str, int]:
    """Freeze and attach per `config.adapter`; returns trainable parameters per part."""
    mode = config.adapter
    frozen = mode != "full"
    for p in model.encoder.parameters():
        p.requires_grad_(not frozen)
    model.frozen_encoder = frozen
    if mode == "conv_adapter":
        attach(model.encoder, lambda conv: ConvAdapter(conv, rank=config.adapter_rank))
    elif mode == "lora":
        attach(model.encoder, lambda conv: LoRAConv(conv, rank=config.adapter_rank))
    return trainable_by_part(model)


def trainable_by_part(model: nn.Module) -> dict[str, int]:
    """Trainable parameter count per top-level part (encoder, encoder.side, hyda, head)."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "encoder.side" if name.startswith("encoder.side.") else name.split(".", 1)[0]
        out[part] = out.get(part, 0) + p.numel()
    return out


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    every = sum(p.numel() for p in model.parameters())
    return every, sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_encoder(model: VolumeClassifier, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Load encoder weights by name where shapes agree: from a classification checkpoint
    (`encoder.*`, plus the head when it fits) or a segmentation/pre-training network (the
    UNet's down path, renamed). A first convolution trained on M input channels is summed
    over them for this single-channel shared encoder. Raises ValueError if nothing fits."""
    own = model.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("encoder.", "head.", "hyda.")):
            target: str | None = key
        else:
            inner = model.encoder.rename(key)
            target = f"encoder.{inner}" if inner is not None else None
        if target is None or target not in own:
            continue
        want = own[target].shape
        if value.shape != want and value.ndim == 5 and want[1] == 1 and value.shape[0] == want[0]:
            value = value.sum(dim=1, keepdim=True)  # M-channel first conv -> 1 channel
        if value.shape == want:
            picked[target] = value
    if not any(k.startswith("encoder.") for k in picked):
        raise ValueError(
            "no encoder weights of the init checkpoint match this network (wrong parent or model?)"
        )
    model.load_state_dict(picked, strict=False)
    return {"loaded_tensors": len(picked), "encoder_tensors": sum(k.startswith("encoder.") for k in picked)}
