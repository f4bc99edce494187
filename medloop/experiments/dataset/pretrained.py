"""Provenance of pre-trained checkpoints, torch-free (the host reads it, the job writes it).

A pre-training job saves its weights as safetensors with a `__metadata__` block:

    medloop.kind            "pretrained"
    medloop.method          s2uniseg | mim
    medloop.seed            the trial seed
    medloop.data_checksum   sha256 of the dataset checksum + the unlabelled folder's checksum
    medloop.network         JSON: model, spatial_dims, in_channels, base_features, depth, res_units
    medloop.weights_sha256  digest of every tensor (name, dtype, shape, bytes), see `weights_digest`

The host checks a finished pre-training trial's checkpoint against what it gave the job
(method, seed, data checksum) and records the file's sha256 with the trial; a
segmentation trial with `init:` pointing at a checkpoint that carries this block is
refused when the weights no longer match their digest (edited after the fact) or when its
network is not the one the trial builds (weights would silently not load).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from medloop.core.errors import DatasetError

KIND = "pretrained"
NETWORK_FIELDS = ("model", "spatial_dims", "in_channels", "base_features", "depth", "res_units")
_MAX_HEADER = 100 << 20  # safetensors caps its JSON header at 100 MB


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header JSON, byte offset of the data section) of a safetensors file."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise DatasetError(f"{path.name}: not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise DatasetError(f"{path.name}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(fh.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DatasetError(f"{path.name}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise DatasetError(f"{path.name}: not a safetensors file (header is not a mapping)")
    return header, 8 + size


def metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` block ({} if none; {} for a non-safetensors checkpoint)."""
    if not path.name.endswith(".safetensors"):
        return {}
    header, _ = read_header(path)
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def weights_digest(path: Path) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in name order: independent
    of the metadata block, so it can be stored in it."""
    header, start = read_header(path)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for name in sorted(k for k in header if k != "__metadata__"):
            entry = header[name]
            try:
                begin, end = (int(x) for x in entry["data_offsets"])
                desc = f"{name}|{entry['dtype']}|{list(entry['shape'])}|"
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{path.name}: tensor {name!r} has a malformed header entry") from None
            digest.update(desc.encode())
            fh.seek(start + begin)
            remaining = end - begin
            while remaining > 0:
                block = fh.read(min(remaining, 1 << 20))
                if not block:
                    raise DatasetError(f"{path.name}: tensor {name!r} is truncated")
                digest.update(block)
                remaining -= len(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_checksum(dataset_checksum: str, unlabelled_checksum: str | None) -> str:
    """What a pre-training run saw: the dataset, plus the unlabelled folder if any."""
    if not unlabelled_checksum:
        return dataset_checksum
    return hashlib.sha256(f"{dataset_checksum}+{unlabelled_checksum}".encode()).hexdigest()


def folder_checksum(folder: Path, ending: str) -> str:
    """sha256 over the sorted names, sizes and contents of `folder/*<ending>` (one level)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.name.endswith(ending) and p.is_file()):
        digest.update(f"{path.name}|{path.stat().st_size}|{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def provenance(path: Path) -> dict[str, Any] | None:
    """The checkpoint's medloop provenance, checked for internal consistency; None when
    the file carries none (a plain checkpoint). A block whose weights digest no longer
    matches the tensors (the weights were edited after the run) is a DatasetError.
    Provenance lives in safetensors metadata only: a torch file (e.g. a SAM-Med3D .pth)
    is a plain checkpoint, checked when the job loads it."""
    if path.suffix != ".safetensors":
        return None
    meta = metadata(path)
    if meta.get("medloop.kind") != KIND:
        return None
    try:
        network = json.loads(meta["medloop.network"])
        out: dict[str, Any] = {
            "method": meta["medloop.method"],
            "seed": int(meta["medloop.seed"]),
            "data_checksum": meta["medloop.data_checksum"],
            "network": network,
            "weights_sha256": meta["medloop.weights_sha256"],
        }
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"{path.name}: pre-trained checkpoint has a malformed provenance block ({exc})"
        ) from None
    actual = weights_digest(path)
    if actual != out["weights_sha256"]:
        raise DatasetError(
            f"{path.name}: weights do not match the digest in their provenance (tampered or corrupted); "
            "refusing to use it",
            hint="re-run the pre-training trial, or use a checkpoint you trust",
        )
    return out


def check_compatible(path: Path, prov: dict[str, Any], network: dict[str, Any]) -> None:
    """A pre-trained checkpoint must come from the network the trial builds: DatasetError
    naming the first field that differs (its weights would otherwise load partly or not at all)."""
    theirs = prov.get("network", {})
    for key in NETWORK_FIELDS:
        if key in network and key in theirs and theirs[key] != network[key]:
            raise DatasetError(
                f"init: {path.name} was pre-trained with {key}={theirs[key]!r}, this trial builds "
                f"{key}={network[key]!r}",
                hint=f"set {key}: {theirs[key]!r} in the trial config, or pre-train that network",
            )
