"""nnU-Net v2 raw datasets: `dataset.json`, `imagesTr/{case}_{XXXX}{ending}`,
`labelsTr/{case}{ending}`, optional `imagesTs` (+ `labelsTs`, kept by the host only) and an
optional `sites.json` ({case: site}).

`read_dataset` is strict and stops at the first structural problem with a message that
names the file or case; `medloop dataset check` (checks.py) lists every problem instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medloop.core.errors import DatasetError

# Files medloop itself writes next to a dataset (plans, splits). They are derived from the
# data, so they are not part of its identity (checksum).
MEDLOOP_PREFIX = "medloop_"
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One case: its channel files in channel order, its label file and its site."""

    id: str
    images: tuple[Path, ...]
    label: Path | None
    site: str | None = None


@dataclass(frozen=True)
class NnunetDataset:
    root: Path
    name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str
    training: tuple[Case, ...]
    test: tuple[Case, ...]
    sites: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # dataset.json as read

    @property
    def foreground(self) -> dict[str, int]:
        """Label name -> value, background (0) excluded."""
        return {name: value for name, value in self.labels.items() if value != 0}

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def case(self, case_id: str) -> Case:
        for case in (*self.training, *self.test):
            if case.id == case_id:
                return case
        raise DatasetError(f"{self.root}: no case {case_id!r}")


def load_dataset_json(root: Path) -> dict[str, Any]:
    path = root / "dataset.json"
    if root.is_file():
        raise DatasetError(
            f"{root}: is a file, not a dataset folder", hint=f"pass the folder that holds it: {root.parent}"
        )
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing",
            hint="an nnU-Net v2 raw dataset has dataset.json; create one with `medloop dataset synth`",
        )
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, a 5,000-digit number, deep nesting
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return data


def parse_meta(root: Path, data: dict[str, Any]) -> tuple[dict[str, str], dict[str, int], str]:
    """channel_names, labels and file_ending from dataset.json, validated."""
    path = root / "dataset.json"
    if "channel_names" not in data and "modality" in data:
        raise DatasetError(
            f"{path}: looks like a Medical Segmentation Decathlon dataset (has 'modality')",
            hint="convert it with `medloop dataset convert-msd SRC DST`",
        )
    for key in ("channel_names", "labels", "file_ending"):
        if key not in data:
            raise DatasetError(f"{path}: required key {key!r} is missing")
    channels = data["channel_names"]
    if not isinstance(channels, dict) or not channels:
        raise DatasetError(f"{path}: channel_names must be a non-empty object such as {{'0': 'CT'}}")
    if sorted(int(k) for k in channels if str(k).isdigit()) != list(range(len(channels))):
        raise DatasetError(f"{path}: channel_names keys must be '0', '1', ... (got {sorted(channels)})")
    labels_raw = data["labels"]
    if not isinstance(labels_raw, dict) or not labels_raw:
        raise DatasetError(f"{path}: labels must be an object such as {{'background': 0, 'liver': 1}}")
    labels: dict[str, int] = {}
    for name, value in labels_raw.items():
        if isinstance(value, list | tuple):
            raise DatasetError(
                f"{path}: labels.{name} is a region (list of values); region-based training is not supported"
            )
        if not isinstance(value, int) or isinstance(value, bool):
            raise DatasetError(f"{path}: labels.{name} must be an integer, got {value!r}")
        labels[str(name)] = value
    if 0 not in labels.values():
        raise DatasetError(f"{path}: labels must include background with value 0")
    ending = data["file_ending"]
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DatasetError(f"{path}: file_ending must be a string such as '.nii.gz'")
    return {str(k): str(v) for k, v in channels.items()}, labels, ending


def scan_images(folder: Path, ending: str) -> dict[str, dict[int, Path]]:
    """case id -> channel index -> file, for `{case}_{XXXX}{ending}` files in `folder`."""
    found: dict[str, dict[int, Path]] = defaultdict(dict)
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(ending):
                continue
            match = _CHANNEL.match(entry.name[: -len(ending)])
            if match:
                found[match["case"]][int(match["channel"])] = Path(entry.path)
    return dict(found)


def scan_labels(folder: Path, ending: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {
            e.name[: -len(ending)]: Path(e.path)
            for e in entries
            if e.name.endswith(ending) and not e.name.startswith(".")
        }


def read_sites(root: Path) -> dict[str, str]:
    path = root / "sites.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, a 5,000-digit number, deep nesting
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str | int) for v in data.values()):
        raise DatasetError(f"{path}: expected an object {{case id: site name}}")
    return {str(k): str(v) for k, v in data.items()}


def _cases(
    images: dict[str, dict[int, Path]],
    labels: dict[str, Path],
    n_channels: int,
    sites: dict[str, str],
    *,
    folder: Path,
    need_labels: bool,
) -> tuple[Case, ...]:
    cases = []
    for case_id in sorted(images):
        channels = images[case_id]
        missing = [f"{case_id}_{c:04d}" for c in range(n_channels) if c not in channels]
        if missing:
            raise DatasetError(f"{folder}: case {case_id} is missing channel file(s) {', '.join(missing)}")
        label = labels.get(case_id)
        if need_labels and label is None:
            raise DatasetError(f"{folder.parent / 'labelsTr'}: case {case_id} has no label file")
        cases.append(Case(case_id, tuple(channels[c] for c in range(n_channels)), label, sites.get(case_id)))
    return tuple(cases)


def read_dataset(path: Path) -> NnunetDataset:
    """Read an nnU-Net v2 raw dataset's structure (no voxel data is loaded).

    Raises DatasetError naming the file or case for anything a trainer could not use.
    """
    root = Path(path)
    data = load_dataset_json(root)
    channels, labels, ending = parse_meta(root, data)
    sites = read_sites(root)
    tr_images = scan_images(root / "imagesTr", ending)
    tr_labels = scan_labels(root / "labelsTr", ending)
    if not tr_images:
        raise DatasetError(f"{root / 'imagesTr'}: no training images ending in {ending}")
    orphans = sorted(set(tr_labels) - set(tr_images))
    if orphans:
        raise DatasetError(
            f"{root / 'labelsTr'}: label(s) without images: {', '.join(orphans[:5])}"
            + (f" (+{len(orphans) - 5} more)" if len(orphans) > 5 else "")
        )
    training = _cases(tr_images, tr_labels, len(channels), sites, folder=root / "imagesTr", need_labels=True)
    declared = data.get("numTraining")
    if isinstance(declared, int) and declared != len(training):
        raise DatasetError(
            f"{root / 'dataset.json'}: numTraining is {declared}, imagesTr has {len(training)} cases",
            hint="fix numTraining or add the missing cases",
        )
    test = _cases(
        scan_images(root / "imagesTs", ending),
        scan_labels(root / "labelsTs", ending),
        len(channels),
        sites,
        folder=root / "imagesTs",
        need_labels=False,
    )
    name = str(data.get("name") or root.name)
    return NnunetDataset(root, name, channels, labels, ending, training, test, sites, data)


# ---------------------------------------------------------------- checksum

# (path, size, mtime_ns, inode) -> sha256 of the content; valid while the file is unchanged.
_HASH_CACHE: dict[tuple[str, int, int, int], str] = {}


def _file_hash(path: Path, stat: os.stat_result) -> str:
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def dataset_files(root: Path) -> list[Path]:
    """Every file that makes up the dataset (hidden files and medloop's own files excluded)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.startswith(MEDLOOP_PREFIX):
                continue
            files.append(Path(dirpath) / name)
    return files


def dataset_checksum(path: Path) -> str:
    """sha256 over every file's relative name, size and content hash (dataset.json
    included). Content hashes are cached per process while size and mtime are unchanged."""
    root = Path(path)
    load_dataset_json(root)
    digest = hashlib.sha256()
    for file in dataset_files(root):
        stat = file.stat()
        rel = file.relative_to(root).as_posix()
        digest.update(f"{rel}\0{stat.st_size}\0{_file_hash(file, stat)}\n".encode())
    return digest.hexdigest()
