"""Medical Segmentation Decathlon (MSD) -> nnU-Net v2 raw.

MSD stores one (possibly 4D, channel-last) NIfTI per case and a dataset.json with
`modality` {index: name}, `labels` {value: name}, `training` [{image, label}] and `test`
[paths]. nnU-Net v2 wants one 3D file per channel (`{case}_{XXXX}.nii.gz`),
`channel_names`, `labels` {name: value} and `file_ending`. Written to a temporary folder
and renamed, so the destination is complete or absent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.imageio import nib_module, read_volume, save_nifti


def _case_id(entry: str) -> str:
    name = Path(entry).name
    for ending in (".nii.gz", ".nii"):
        if name.endswith(ending):
            return name[: -len(ending)]
    raise DatasetError(f"MSD entry {entry!r} is not a NIfTI file")


def _resolve(src: Path, entry: str) -> Path:
    path = (src / entry).resolve()
    if not path.is_file():
        raise DatasetError(f"{src / 'dataset.json'}: lists {entry} but {path} does not exist")
    return path


def _split_channels(image: Path, case: str, n_channels: int, dest: Path) -> None:
    vol = read_volume(image, dtype=np.float32)
    data = vol.array
    if n_channels == 1:
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim not in (2, 3):
            raise DatasetError(
                f"{image}: expected a 3D image for a 1-channel dataset, got shape {data.shape}"
            )
        channels = [data]
    else:
        if data.ndim != 4 or data.shape[3] != n_channels:
            raise DatasetError(
                f"{image}: expected 4D data with {n_channels} channels last, got shape {data.shape}"
            )
        channels = [data[..., c] for c in range(n_channels)]
    dtype = nib_module().load(str(image)).get_data_dtype()  # keep the stored type (int16 CT, float MR)
    for c, channel in enumerate(channels):
        save_nifti(
            channel.astype(dtype),
            dest / f"{case}_{c:04d}.nii.gz",
            spacing=vol.spacing[:3],
            affine=vol.affine,
        )


def convert_msd(src: Path, dst: Path) -> Path:
    """Convert the MSD dataset at `src` into an nnU-Net v2 raw dataset at `dst`."""
    src, dst = Path(src), Path(dst)
    meta_path = src / "dataset.json"
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{meta_path}: missing (is {src} an MSD task folder?)") from None
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, a 5,000-digit number, deep nesting
        raise DatasetError(f"{meta_path}: not valid JSON ({exc})") from None
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise DatasetError(f"{meta_path}: required MSD key {key!r} is missing")
    if dst.exists() and any(dst.iterdir()):
        raise DatasetError(f"{dst}: already exists and is not empty", hint="choose a new folder")
    modality = {str(k): str(v) for k, v in meta["modality"].items()}
    n_channels = len(modality)
    try:
        labels = {str(name): int(value) for value, name in meta["labels"].items()}
    except (TypeError, ValueError):
        raise DatasetError(f"{meta_path}: labels must map integer values to names") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}-"))
    try:
        training = meta["training"]
        for entry in training:
            case = _case_id(entry["image"])
            _split_channels(_resolve(src, entry["image"]), case, n_channels, tmp / "imagesTr")
            label = read_volume(_resolve(src, entry["label"]), dtype=np.float32)
            save_nifti(
                np.rint(label.array).astype(np.uint8),
                tmp / "labelsTr" / f"{case}.nii.gz",
                spacing=label.spacing,
                affine=label.affine,
            )
        for entry in meta.get("test", []):
            path = entry if isinstance(entry, str) else entry["image"]
            _split_channels(_resolve(src, path), _case_id(path), n_channels, tmp / "imagesTs")
        out = {
            "name": meta.get("name", dst.name),
            "description": meta.get("description", ""),
            "reference": meta.get("reference", ""),
            "licence": meta.get("licence", ""),
            "channel_names": modality,
            "labels": labels,
            "numTraining": len(training),
            "file_ending": ".nii.gz",
            "converted_from": {"format": "msd", "source": str(src)},
        }
        (tmp / "dataset.json").write_text(json.dumps(out, indent=2) + "\n")
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
