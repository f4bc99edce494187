"""The single-writer rule for the embedded Chroma index: an advisory `flock` on a file in
the index folder, held for the life of the process. Other processes run as readers: they
follow SQL into an in-memory index instead of opening Chroma (which is not multi-process
safe). The lock dies with its process, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

_lock = threading.Lock()
_held: dict[Path, int] = {}  # lock file -> open descriptor (shared by this process's users)


def try_acquire(path: Path) -> bool:
    """True if this process holds (or now takes) the writer lock at `path`."""
    path = path.resolve()
    with _lock:
        if path in _held:
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[path] = fd
        return True


def holder(path: Path) -> str:
    """The pid written by the current holder, for error messages."""
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def release(path: Path) -> None:
    with _lock:
        fd = _held.pop(path.resolve(), None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
