"""Reading a folder that hostile code wrote, without following any link out of it.

A sandboxed job controls every name under its output folder. A symlink named like a
prediction (to a host label file), a hard link to a file it was given read-only, a FIFO
that blocks the reader or a device node must never reach a host reader. Everything here
walks relative to directory file descriptors (openat-style, `O_NOFOLLOW` on every
component), so neither a link nor a parent folder swapped during the walk can redirect a
read, and refuses anything that is not a plain folder or a regular file with one link.

    entries(root)                 every entry, checked, with caps on count and bytes
    read_bytes(root, "a/b.json")  one regular file's bytes, capped
    copy_tree(root, "predictions", dest)   a private snapshot (0600 files, 0700 folders)
    tar_tree(root)                an uncompressed tar of the checked tree (for Ray)
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medloop.core.errors import MedloopError

# The defaults bound what a host reader will ever look at in one job output.
MAX_ENTRIES = 10_000
MAX_BYTES = 4 << 30
MAX_FILE_BYTES = 64 << 20  # one file read into memory (result.json, a JSON-lines file)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO must not block the host before fstat refuses it.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class UnsafeOutput(MedloopError):
    """A job's output holds something the host refuses to read (a link, a device, a FIFO,
    too many entries or bytes). The trial fails with this message; the host reads nothing."""


@dataclass(frozen=True)
class Entry:
    path: PurePosixPath  # relative to the root
    is_dir: bool
    size: int  # bytes of a file; 0 for a folder


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    return "not a regular file"


def _check(st: os.stat_result, rel: PurePosixPath) -> None:
    if stat.S_ISDIR(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeOutput(f"job output {rel.as_posix()} is {_kind(st.st_mode)}; only regular files are read")
    if st.st_nlink > 1:
        raise UnsafeOutput(
            f"job output {rel.as_posix()} is a hard link ({st.st_nlink} names for one file); "
            "a job may only write new files"
        )


def _relpath(rel: str | PurePosixPath) -> PurePosixPath:
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts):
        raise UnsafeOutput(f"job output path {str(rel)!r} must be relative, without '..'")
    return PurePosixPath(*[p for p in path.parts if p != "."]) if path.parts else PurePosixPath()


@contextlib.contextmanager
def _open_dir(root: Path, rel: PurePosixPath) -> Iterator[int]:
    """An fd of folder `root/rel`, each component opened with O_NOFOLLOW below the last."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafeOutput(f"job output folder {root} cannot be opened as a folder: {exc.strerror}") from None
    try:
        for part in rel.parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise UnsafeOutput(
                    f"job output {rel.as_posix()} is not a plain folder ({exc.strerror})"
                ) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _walk(dir_fd: int, rel: PurePosixPath, budget: list[int], max_bytes: int) -> Iterator[tuple[Entry, int]]:
    """Yield (entry, parent fd) depth-first; budget[0] counts entries left."""
    for name in sorted(os.listdir(dir_fd)):
        child_rel = rel / name
        budget[0] -= 1
        if budget[0] < 0:
            raise UnsafeOutput(f"job output has more than {budget[1]} files and folders (entry limit)")
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        _check(st, child_rel)
        if stat.S_ISDIR(st.st_mode):
            yield Entry(child_rel, True, 0), dir_fd
            child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                yield from _walk(child, child_rel, budget, max_bytes)
            finally:
                os.close(child)
        else:
            budget[2] += st.st_size
            if budget[2] > max_bytes:
                raise UnsafeOutput(f"job output holds more than {max_bytes >> 20} MB (byte limit)")
            yield Entry(child_rel, False, st.st_size), dir_fd


def entries(
    root: Path, rel: str | PurePosixPath = "", *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
) -> list[Entry]:
    """Every entry under `root/rel` (paths relative to `root`), checked; raises
    UnsafeOutput on the first link, special file or cap exceeded. A missing `rel` is empty."""
    start = _relpath(rel)
    try:
        with _open_dir(root, start) as fd:
            return [entry for entry, _ in _walk(fd, start, [max_entries, max_entries, 0], max_bytes)]
    except FileNotFoundError:
        return []


def _open_file(root: Path, rel: PurePosixPath) -> int:
    with _open_dir(root, rel.parent) as parent:
        try:
            fd = os.open(rel.name, _FILE_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError as exc:  # ELOOP: the name is a symlink
            raise UnsafeOutput(
                f"job output {rel.as_posix()} cannot be read safely ({exc.strerror})"
            ) from None
    try:
        _check(os.fstat(fd), rel)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise UnsafeOutput(f"job output {rel.as_posix()} is a folder, not a file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(root: Path, rel: str | PurePosixPath, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of regular file `root/rel`; FileNotFoundError if it is absent."""
    path = _relpath(rel)
    fd = _open_file(root, path)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeOutput(f"job output {path.as_posix()} is larger than {max_bytes >> 20} MB")
    return data


def is_file(root: Path, rel: str | PurePosixPath) -> bool:
    """Whether `root/rel` is a regular file reached without links (links count as absent)."""
    try:
        os.close(_open_file(root, _relpath(rel)))
    except (FileNotFoundError, UnsafeOutput):
        return False
    return True


def _copy_fd(src_fd: int, dest: Path) -> None:
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(src_fd, "rb", closefd=False) as src, os.fdopen(out, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)


def copy_file(root: Path, rel: str | PurePosixPath, dest: Path) -> None:
    """Copy one regular file out of `root` to a new private file `dest` (mode 0600)."""
    fd = _open_file(root, _relpath(rel))
    try:
        _copy_fd(fd, dest)
    finally:
        os.close(fd)


def copy_tree(
    root: Path,
    rel: str | PurePosixPath,
    dest: Path,
    *,
    max_entries: int = MAX_ENTRIES,
    max_bytes: int = MAX_BYTES,
) -> bool:
    """Snapshot folder `root/rel` into the new folder `dest` (0700 folders, 0600 files).

    Returns False when `root/rel` does not exist. The copy holds only what was checked:
    host code then reads the snapshot, which the job can no longer touch."""
    start = _relpath(rel)
    try:
        with _open_dir(root, start) as fd:
            dest.mkdir(mode=0o700, parents=True)
            for entry, parent in _walk(fd, start, [max_entries, max_entries, 0], max_bytes):
                target = dest.joinpath(*entry.path.relative_to(start).parts)
                if entry.is_dir:
                    target.mkdir(mode=0o700)
                    continue
                src = os.open(entry.path.name, _FILE_FLAGS, dir_fd=parent)
                try:
                    _check(os.fstat(src), entry.path)  # the name may have been swapped since
                    _copy_fd(src, target)
                finally:
                    os.close(src)
    except FileNotFoundError:
        if dest.exists():
            raise
        return False
    return True


def tar_tree(root: Path, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> bytes:
    """The checked tree under `root` as an uncompressed tar (regular files and folders only)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar, _open_dir(root, PurePosixPath()) as fd:
        for entry, parent in _walk(fd, PurePosixPath(), [max_entries, max_entries, 0], max_bytes):
            info = tarfile.TarInfo(entry.path.as_posix())
            if entry.is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
                continue
            src = os.open(entry.path.name, _FILE_FLAGS, dir_fd=parent)
            try:
                st = os.fstat(src)
                _check(st, entry.path)
                info.size, info.mode = st.st_size, 0o600
                with os.fdopen(src, "rb", closefd=False) as fh:
                    tar.addfile(info, fh)
            finally:
                os.close(src)
    return buffer.getvalue()
