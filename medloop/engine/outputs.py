"""The one way host code reads a finished job's `/out`: `OutputTree`.

The job wrote every name in that folder, so nothing in it is trusted: the tree is checked
once without following any link (`core.safe_tree`), and what a scorer or a later job needs
is read from a private snapshot the job can no longer touch. A symlink to a host label
file, a hard link, a FIFO or a device in the output fails the trial with the reason; the
host never opens the file behind it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from types import TracebackType

from medloop.core import safe_tree
from medloop.core.safe_tree import UnsafeOutput

__all__ = ["OutputTree", "UnsafeOutput"]


class OutputTree:
    """A job's output folder, read safely. Use as a context manager: snapshots live in a
    private scratch folder under `scratch_root` that is removed on exit."""

    def __init__(
        self,
        root: Path,
        scratch_root: Path,
        *,
        max_entries: int = safe_tree.MAX_ENTRIES,
        max_bytes: int = safe_tree.MAX_BYTES,
    ) -> None:
        self.root = root
        self._scratch_root = scratch_root
        self._scratch: Path | None = None
        self._snapshots: dict[str, Path | None] = {}
        self._count = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def __enter__(self) -> OutputTree:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
            self._snapshots.clear()

    def check(self) -> list[safe_tree.Entry]:
        """Every entry of the output; raises UnsafeOutput naming the first bad one."""
        return safe_tree.entries(self.root, max_entries=self.max_entries, max_bytes=self.max_bytes)

    def read_text(self, rel: str) -> str:
        """A small text file (result.json); FileNotFoundError when absent."""
        return safe_tree.read_bytes(self.root, rel).decode("utf-8")

    def is_file(self, rel: str) -> bool:
        return safe_tree.is_file(self.root, rel)

    def _new_path(self, rel: str) -> Path:
        if self._scratch is None:
            self._scratch_root.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(dir=self._scratch_root, prefix=".out-"))
        self._count += 1
        return self._scratch / str(self._count) / PurePosixPath(rel).name

    def folder(self, rel: str) -> Path | None:
        """A private copy of folder `rel` (None when the job wrote none)."""
        if rel not in self._snapshots:
            dest = self._new_path(rel)
            dest.parent.mkdir(mode=0o700)
            found = safe_tree.copy_tree(
                self.root, rel, dest, max_entries=self.max_entries, max_bytes=self.max_bytes
            )
            self._snapshots[rel] = dest if found else None
        return self._snapshots[rel]

    def file(self, rel: str) -> Path | None:
        """A private copy (mode 0600) of regular file `rel` (None when absent)."""
        if rel not in self._snapshots:
            dest = self._new_path(rel)
            dest.parent.mkdir(mode=0o700)
            try:
                safe_tree.copy_file(self.root, rel, dest)
            except FileNotFoundError:
                self._snapshots[rel] = None
            else:
                self._snapshots[rel] = dest
        return self._snapshots[rel]

    def empty_folder(self) -> Path:
        """A private empty folder: what a scorer reads when the job wrote no predictions."""
        dest = self._new_path("empty")
        dest.mkdir(mode=0o700, parents=True)
        return dest
