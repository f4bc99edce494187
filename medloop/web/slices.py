"""The slice viewer's data: one axial slice of a case's image, its reference label (read
on the host from the campaign's dataset) and the trial's prediction (from the job's
output folder), as uint8 arrays; and a PNG overlay for reports.

Arrays are shown as stored: rows = first voxel axis, columns = second, slices = third
(the same for image, label and prediction, which share one geometry by the job contract).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core import safe_tree
from medloop.core.errors import NotFoundError
from medloop.core.records import Campaign, Trial
from medloop.web.views import out_dir

# Overlay colours (RGB) per class value 1..; label = outline, prediction = filled tint.
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


@dataclass(frozen=True)
class CaseSlice:
    case: str
    split: str
    z: int
    depth: int
    image: NDArray[np.uint8]  # (H, W) windowed grey
    raw: NDArray[np.float32]  # (H, W) stored intensities (HU for CT), for window/level in the viewer
    label: NDArray[np.uint8] | None  # (H, W) class values
    prediction: NDArray[np.uint8] | None  # (H, W) class values
    labels: dict[str, int]


def dataset_root(campaign: Campaign, cwd: Path) -> Path:
    """The campaign's dataset folder (relative paths are relative to the server's cwd)."""
    path = campaign.spec.dataset.path
    return path if path.is_absolute() else cwd / path


def case_files(trial: Trial, campaign: Campaign, split: str, case: str, cwd: Path) -> dict[str, Path | None]:
    """image, label and prediction paths of one case (label/prediction None if absent)."""
    manifest = trial.spec.dataset
    ending = manifest.file_ending
    known = {
        "eval": manifest.eval_cases,
        "test": manifest.test_cases,
        "internal_val": manifest.train_cases,
    }
    if split not in known or case not in known[split]:
        raise NotFoundError(f"case {case!r} is not in the {split!r} split of trial {trial.id}")
    root = dataset_root(campaign, cwd)
    folder = "Ts" if split == "test" else "Tr"
    image = root / f"images{folder}" / f"{case}_0000{ending}"
    if not image.is_file():
        raise NotFoundError(
            f"image of case {case} not found at {image}",
            hint="the dataset folder of the campaign must be readable by the server",
        )
    label = root / f"labels{folder}" / f"{case}{ending}"
    pred_root = out_dir(trial)
    rel = f"predictions/{split}/{case}{ending}"
    # The job wrote that folder: a prediction that is a link (to a host label) is not shown.
    pred = pred_root / rel if pred_root is not None and safe_tree.is_file(pred_root, rel) else None
    return {
        "image": image,
        "label": label if label.is_file() else None,
        "prediction": pred,
    }


def _volume(path: Path) -> Any:
    import nibabel as nib

    return nib.load(str(path)).dataobj  # type: ignore[attr-defined]


def _plane(dataobj: Any, z: int) -> NDArray[Any]:
    shape = dataobj.shape
    if len(shape) == 2:
        return np.asarray(dataobj)
    return np.asarray(dataobj[:, :, z] if len(shape) == 3 else dataobj[:, :, z, 0])


def window(image: NDArray[Any]) -> NDArray[np.uint8]:
    """Grey values 0..255 between the 0.5 and 99.5 percentiles (robust to air and bone)."""
    data = image.astype(np.float32)
    lo, hi = np.percentile(data, [0.5, 99.5]) if data.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((data - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def load_slice(
    files: dict[str, Path | None], *, case: str, split: str, z: int | None, labels: dict[str, int]
) -> CaseSlice:
    image_path = files["image"]
    assert image_path is not None
    vol = _volume(image_path)
    depth = int(vol.shape[2]) if len(vol.shape) >= 3 else 1
    zi = depth // 2 if z is None else z
    if not 0 <= zi < depth:
        raise NotFoundError(f"slice {zi} is outside 0..{depth - 1} of case {case}")
    plane = _plane(vol, zi)
    raw = np.nan_to_num(plane.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    image = window(raw)

    def classes(key: str) -> NDArray[np.uint8] | None:
        path = files.get(key)
        if path is None:
            return None
        plane = _plane(_volume(path), zi)
        if plane.shape != image.shape:
            return None  # geometry differs: better nothing than a misleading overlay
        out: NDArray[np.uint8] = np.clip(np.rint(plane), 0, 255).astype(np.uint8)
        return out

    return CaseSlice(
        case=case,
        split=split,
        z=zi,
        depth=depth,
        image=image,
        raw=raw,
        label=classes("label"),
        prediction=classes("prediction"),
        labels=dict(labels),
    )


def b64(array: NDArray[np.uint8] | NDArray[np.float32] | None) -> str | None:
    if array is None:
        return None
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


# ---------------------------------------------------------------- PNG (reports)


def _outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def overlay_rgb(s: CaseSlice, *, alpha: float = 0.35) -> NDArray[np.uint8]:
    """(H, W, 3): prediction as a tint, reference label as an outline, per class colour."""
    rgb = np.repeat(s.image[:, :, None].astype(np.float32), 3, axis=2)
    for value in sorted({v for v in s.labels.values() if v > 0}):
        colour = np.array(PALETTE[(value - 1) % len(PALETTE)], dtype=np.float32)
        if s.prediction is not None:
            m = s.prediction == value
            rgb[m] = (1 - alpha) * rgb[m] + alpha * colour
        if s.label is not None:
            rgb[_outline(s.label == value)] = colour
    return rgb.clip(0, 255).astype(np.uint8)


def png_bytes(rgb: NDArray[np.uint8], *, scale: int = 1) -> bytes:
    """Encode (H, W, 3) uint8 as PNG (nearest-neighbour upscaled by `scale`)."""
    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
