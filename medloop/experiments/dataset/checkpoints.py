"""Host side of transfer learning: resolve `SegConfig.init` to a checkpoint file and stage
it read-only for the job (torch-free).

    init = "scratch"            -> nothing to stage
    init = "trial:<trial id>"   -> that trial's best checkpoint (the caller looks it up)
    init = "file:<path>"        -> a .safetensors (or torch weights-only) file

The staged folder is mounted as the job input `init`; the spec then carries
`init_checkpoint="init/<file>"` and `provenance={"init_parent": ..., "init_sha256": ...}`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medloop.core.errors import DatasetError, NotFoundError

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclass(frozen=True)
class StagedCheckpoint:
    folder: Path  # mount this as the job input "init"
    relative: str  # TrialSpec.init_checkpoint
    provenance: dict[str, str]  # merge into TrialSpec.provenance


def resolve_init(init: str, trial_checkpoint: Callable[[str], Path | None]) -> tuple[Path, str] | None:
    """(checkpoint file, parent description) for an init value; None for scratch.

    `trial_checkpoint(trial_id)` returns that trial's checkpoint path (or None)."""
    if init == "scratch":
        return None
    if init.startswith("trial:"):
        trial_id = init.removeprefix("trial:")
        path = trial_checkpoint(trial_id)
        if path is None or not path.is_file():
            raise NotFoundError(
                f"init: trial {trial_id} has no checkpoint", hint="use a completed trial, or init: scratch"
            )
        return path, f"trial:{trial_id}"
    if init.startswith("file:"):
        path = Path(init.removeprefix("file:")).expanduser()
        if not path.is_file():
            raise NotFoundError(f"init: checkpoint file {path} does not exist")
        if not path.name.endswith(CHECKPOINT_SUFFIXES):
            raise DatasetError(f"init: {path} is not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
        return path.resolve(), f"file:{path.resolve()}"
    raise DatasetError(f"init: {init!r} is not scratch, trial:<id> or file:<path>")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage_checkpoint(src: Path, parent: str, staging_root: Path) -> StagedCheckpoint:
    """Copy (hardlink when possible) `src` into a content-addressed folder under
    `staging_root`, atomically; the same file is staged once."""
    sha = _sha256(src)
    suffix = next((s for s in CHECKPOINT_SUFFIXES if src.name.endswith(s)), ".safetensors")
    name = f"{sha[:16]}{suffix}"
    folder = Path(staging_root) / f"init-{sha[:16]}"
    if not (folder / name).is_file():
        Path(staging_root).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=staging_root, prefix=".init-"))
        try:
            try:
                os.link(src, tmp / name)
            except OSError:
                shutil.copy2(src, tmp / name)
            try:
                tmp.rename(folder)
            except OSError:  # staged concurrently by another process: same content
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return StagedCheckpoint(folder, f"init/{name}", {"init_parent": parent, "init_sha256": sha})
