"""Checkpoints of the promptable model: medloop's own (safetensors, with the normaliser and
preset in the metadata) and external ones in SAM-Med3D's layout (a torch file holding
`{"model_state_dict": {...}}` or the bare state dict, keys `image_encoder.*`,
`prompt_encoder.*`, `mask_decoder.*`, optionally prefixed `module.` by DataParallel).

Torch files are read with `weights_only=True`: tensors and plain containers, no pickled code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Keys the model may have that a SAM-Med3D checkpoint lacks: the box-corner embeddings
# (SAM-Med3D has points only). They keep their fresh initialisation.
OPTIONAL_KEYS = ("prompt_encoder.point_embeddings.2.weight", "prompt_encoder.point_embeddings.3.weight")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the file and the key."""


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a .safetensors or torch (.pt/.pth) checkpoint."""
    if path.name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            return {k: fh.get_tensor(k) for k in fh.keys()}, meta  # noqa: SIM118 - safe_open has no __iter__
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
        raise CheckpointError(
            f"{path.name}: not a readable torch checkpoint ({type(exc).__name__})"
        ) from None
    if isinstance(raw, dict) and isinstance(raw.get("model_state_dict"), dict):
        raw = raw["model_state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path.name}: expected a state dict of tensors (or model_state_dict)")
    return {str(k).removeprefix("module."): v for k, v in raw.items()}, {}


def load_into(model: nn.Module, path: Path, *, preset: str) -> dict[str, Any]:
    """Load `path` into `model` strictly (bar OPTIONAL_KEYS); CheckpointError naming the
    first missing, unexpected or wrongly shaped key. Returns a summary for provenance."""
    state, meta = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which"
        more = len(missing) + len(unexpected) - 1
        tail = f" (+{more} more key differences)" if more else ""
        suffix = "" if missing else " the model does not have"
        raise CheckpointError(
            f"{path.name}: the checkpoint {what}{suffix} (model_size {preset!r}, SAM-Med3D layout){tail}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{path.name}: {key} has shape {tuple(tensor.shape)}, model_size {preset!r} expects "
                f"{tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=False)
    return {
        "file": path.name,
        "tensors": len(state),
        "kept_fresh": [k for k in OPTIONAL_KEYS if k in own and k not in state],
        "medloop": "preset" in meta,
    }


def save(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """medloop's checkpoint: safetensors with JSON metadata (preset, channels, normaliser)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={k: json.dumps(v) for k, v in meta.items()})


def read_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = dict(fh.metadata() or {})
    return {k: json.loads(v) for k, v in raw.items()}
