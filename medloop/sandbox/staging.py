"""Staging a job's inputs and rewriting its `/in` and `/out` paths (local runtime).

Inputs are copied into `in/` while they fit a per-job copy budget, so the job cannot
change the host's files through them; larger inputs are symlinked (reading a big dataset
must not cost a copy per trial). Staged files and folders are then made read-only.
The local runtime is for trusted code on a workstation; the Docker runtime is the
security boundary.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path, PurePosixPath

from medloop.core.errors import SpecError
from medloop.core.records import JobSpec
from medloop.sandbox.base import IN_DIR, OUT_DIR

# `/in` or `/out` at the start of a path: not inside another path (`/data/in`), followed
# by `/`, the end, or a delimiter as found in `--out=/out` or `open('/out/x')`.
_PREFIX = re.compile(r"(?<![\w./-])(/in|/out)(?=/|$|[\s'\":=,;)\]])")


def rewrite_paths(text: str, *, in_dir: Path, out_dir: Path) -> str:
    mapping = {IN_DIR: str(in_dir), OUT_DIR: str(out_dir)}
    return _PREFIX.sub(lambda m: mapping[m.group(1)], text)


def input_relpath(job: JobSpec, name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        raise SpecError(
            f"job {job.key}: input name {name!r} must be a relative path without '..'",
            hint="name inputs like 'spec.json' or 'train'",
        )
    return rel


def resolve_inputs(job: JobSpec) -> dict[PurePosixPath, Path]:
    """Validate input names and host paths; returns relative name -> resolved host path."""
    resolved: dict[PurePosixPath, Path] = {}
    for name, src in sorted(job.inputs.items()):
        rel = input_relpath(job, name)
        path = Path(src).expanduser().resolve()
        if not path.exists():
            raise SpecError(
                f"job {job.key}: input {name!r}: {path} does not exist",
                hint="every JobSpec.inputs path must exist on the host when the job is submitted",
            )
        resolved[rel] = path
    return resolved


def stage_inputs(job: JobSpec, in_dir: Path, *, copy_budget_bytes: int) -> int:
    """Stage every input at `in_dir/<name>`; returns the bytes copied."""
    budget = [copy_budget_bytes]

    def place(src: Path, dest: Path) -> None:
        size = src.stat().st_size
        if size <= budget[0]:
            shutil.copyfile(src, dest)
            budget[0] -= size
        else:
            dest.symlink_to(src)

    in_dir.mkdir(parents=True, exist_ok=True)
    for rel, src in resolve_inputs(job).items():
        dest = in_dir.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            for root, dirs, files in os.walk(src):
                target = dest / Path(root).relative_to(src)
                target.mkdir(parents=True, exist_ok=True)
                dirs.sort()
                for fname in sorted(files):
                    place(Path(root) / fname, target / fname)
        else:
            place(src, dest)
    _make_read_only(in_dir)
    return copy_budget_bytes - budget[0]


def _make_read_only(root: Path) -> None:
    for current, dirs, files in os.walk(root, topdown=False):
        for fname in files:
            path = Path(current) / fname
            if not path.is_symlink():
                path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        for dname in dirs:
            (Path(current) / dname).chmod(0o555)
    root.chmod(0o555)


def readable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can read `path` (and walk into its folders)."""
    if not path.is_dir():
        return path.stat().st_mode & 0o004 != 0
    for current, _dirs, files in os.walk(path):
        if Path(current).stat().st_mode & 0o005 != 0o005:
            return False
        if any(Path(current, fname).stat().st_mode & 0o004 == 0 for fname in files):
            return False
    return True


def readable_copy(path: Path, cache_root: Path, *, owner: int | None = None) -> Path:
    """A read-only copy of `path` that the job's user can read, made once per content
    fingerprint.

    A container runs as an unprivileged user and cannot read owner-only (0600) inputs
    such as files written through mkstemp; it gets this copy instead. With `owner` (the
    job's uid) the copy stays private: owned by that uid, 0400 files and 0500 folders, so
    no other user of the host can read it; without, it is world-readable (0444/0555).
    The original's modes are left alone (it may be a hardlink into the user's dataset).
    """
    import hashlib

    digest = hashlib.sha256(f"{path}:{owner}".encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        stat_ = file.stat()
        digest.update(f"{file}:{stat_.st_size}:{stat_.st_mtime_ns}".encode())
    target = cache_root / digest.hexdigest()[:24] / path.name
    if target.exists():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    # A private temp folder per call: concurrent submits of the same input each build one.
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{digest.hexdigest()[:24]}."))
    if path.is_dir():
        shutil.copytree(path, tmp / path.name, symlinks=False)
    else:
        shutil.copyfile(path, tmp / path.name)
    file_mode, dir_mode = (0o444, 0o555) if owner is None else (0o400, 0o500)
    for current, dirs, files_ in os.walk(tmp):
        for name, mode in [*((f, file_mode) for f in files_), *((d, dir_mode) for d in dirs)]:
            if owner is not None:
                os.chown(Path(current, name), owner, owner, follow_symlinks=False)
            Path(current, name).chmod(mode)
    if owner is not None:
        os.chown(tmp, owner, owner)
    tmp.chmod(dir_mode)
    try:
        tmp.rename(target.parent)
    except OSError:  # made by a concurrent job first
        remove_read_only(tmp)
    return target


def remove_read_only(path: Path) -> None:
    for current, dirs, _files in os.walk(path):
        Path(current).chmod(0o755)
        for dname in dirs:
            Path(current, dname).chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)
