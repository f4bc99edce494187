"""Starting a trial from earlier weights: fine-tune all, freeze the encoder, or train
lightweight adapters on a frozen network.

The host stages the parent checkpoint (an earlier trial's `best.safetensors`, or a file)
beside the spec and names it in `TrialSpec.init_checkpoint`; its origin goes into the
trial's provenance. Weights load by name where the shapes agree, so a network with a
different number of output classes keeps its new head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medloop.core.records import TrialSpec
from medloop.core.specs import SegConfig

ADAPTER_RANK = 8  # channels of the adapter bottleneck


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a torch file loaded with weights_only (no arbitrary unpickling)."""
    if not path.is_file():
        raise FileNotFoundError(f"init checkpoint {path} is missing (the host stages it)")
    if path.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _fill_aliases(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint stores a shared tensor under one name (safetensors' save_model); give
    it every name the model uses for the same storage."""
    groups: dict[int, list[str]] = {}
    for name, tensor in own.items():
        groups.setdefault(tensor.data_ptr(), []).append(name)
    out = dict(state)
    for names in groups.values():
        present = next((n for n in names if n in state), None)
        if present is not None:
            for n in names:
                out.setdefault(n, state[present])
    return out


def encoder_modules(model: nn.Module, config: SegConfig) -> list[nn.Module]:
    """The downsampling path of each supported network."""
    names = {
        "dynunet": ("input_block", "downsamples", "bottleneck"),
        "segresnet": ("convInit", "down_layers"),
        "swinunetr": ("swinViT", "encoder1", "encoder2", "encoder3", "encoder4", "encoder10"),
    }.get(config.model)
    if names is not None:
        return [m for m in (getattr(model, n, None) for n in names) if isinstance(m, nn.Module)]
    # MONAI UNet nests Sequential(down, SkipConnection(Sequential(down, ..., up)), up); the
    # innermost level is a plain block (the bottom).
    out: list[nn.Module] = []
    node: nn.Module = model.model  # type: ignore[assignment]
    while isinstance(node, nn.Sequential) and len(node) == 3:
        out.append(node[0])
        skip = node[1]
        node = getattr(skip, "submodule", skip)
    out.append(node)
    return out


class ConvAdapter(nn.Module):
    """A zero-initialised parallel 1x1 bottleneck added to a frozen convolution's output:
    y = conv(x) + up(down(x)). At start it changes nothing."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d, rank: int = ADAPTER_RANK) -> None:
        super().__init__()
        conv_type = nn.Conv3d if isinstance(conv, nn.Conv3d) else nn.Conv2d
        stride: Any = conv.stride
        self.down = conv_type(conv.in_channels, rank, kernel_size=1, stride=stride, bias=False)
        self.up = conv_type(rank, conv.out_channels, kernel_size=1, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.up(self.down(x))
        return result


def add_adapters(model: nn.Module) -> nn.ModuleDict:
    """Attach a ConvAdapter to every (non-transposed, ungrouped) convolution via a forward
    hook. Returns the adapters, registered on the model as `adapters`."""
    adapters = nn.ModuleDict()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d | nn.Conv3d) and module.groups == 1:
            adapter = ConvAdapter(module)
            adapters[name.replace(".", "__")] = adapter

            def hook(
                mod: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor, a: nn.Module = adapter
            ) -> torch.Tensor:
                extra: torch.Tensor = a(args[0])
                if extra.shape != output.shape:  # odd sizes with padding: crop to the conv's output
                    for axis, size in enumerate(output.shape[2:], start=2):
                        extra = extra.narrow(axis, 0, size)
                return output + extra

            module.register_forward_hook(hook)
    model.add_module("adapters", adapters)
    return adapters


def initialise(
    model: nn.Module, spec: TrialSpec, in_dir: Path, config: SegConfig
) -> tuple[nn.Module, list[nn.Parameter], dict[str, Any]]:
    """Load the staged checkpoint into `model` and choose what trains.

    Returns (model, trainable parameters, provenance info for result.json).
    """
    if spec.init_checkpoint is None:
        raise ValueError(
            f"config.init is {config.init!r} but the spec has no init_checkpoint (host must stage it)"
        )
    if config.init == "scratch":
        raise ValueError("the spec has an init_checkpoint but config.init is 'scratch'")
    path = (in_dir / spec.init_checkpoint).resolve()
    state = load_weights(path)
    own = model.state_dict()
    state = _fill_aliases(state, own)
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not loaded:
        raise ValueError(
            f"{spec.init_checkpoint}: no weights match this network ({config.model}); wrong parent?"
        )
    model.load_state_dict(loaded, strict=False)
    fresh = {k for k in own if k not in loaded}  # e.g. a new output head
    for p in model.parameters():
        p.requires_grad_(True)
    if config.init_mode == "freeze_encoder":
        for module in encoder_modules(model, config):
            for p in module.parameters():
                p.requires_grad_(False)
    elif config.init_mode == "adapter":
        for name, p in model.named_parameters():
            # trainable: new tensors and 1-D ones (biases, normalisation affines); adapters below
            p.requires_grad_(name in fresh or p.ndim == 1)
        add_adapters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    info = {
        "source": config.init,
        "checkpoint": spec.init_checkpoint,
        "mode": config.init_mode,
        "loaded_tensors": len(loaded),
        "fresh_tensors": sorted(fresh)[:20],
        "parent": spec.provenance.get("init_parent"),
    }
    return model, params, info
