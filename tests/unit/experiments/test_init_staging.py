"""Host-side staging of transfer checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from medloop.core.errors import DatasetError, NotFoundError
from medloop.experiments.dataset.checkpoints import resolve_init, stage_checkpoint


def test_resolve_and_stage(tmp_path: Path) -> None:
    ckpt = tmp_path / "trials" / "trl_1" / "best.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    lookup = {"trl_1": ckpt}.get
    assert resolve_init("scratch", lookup) is None
    path, parent = resolve_init("trial:trl_1", lookup)  # type: ignore[misc]
    assert path == ckpt and parent == "trial:trl_1"
    staged = stage_checkpoint(path, parent, tmp_path / "staging")
    assert (staged.folder / Path(staged.relative).name).read_bytes() == b"weights"
    assert staged.relative.startswith("init/") and staged.provenance["init_parent"] == "trial:trl_1"
    assert len(staged.provenance["init_sha256"]) == 64
    assert stage_checkpoint(path, parent, tmp_path / "staging") == staged  # staged once
    assert len(list((tmp_path / "staging").iterdir())) == 1

    by_file = resolve_init(f"file:{ckpt}", lookup)
    assert by_file is not None and by_file[1] == f"file:{ckpt.resolve()}"


def test_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="trial trl_x has no checkpoint"):
        resolve_init("trial:trl_x", lambda _: None)
    with pytest.raises(NotFoundError, match="does not exist"):
        resolve_init(f"file:{tmp_path / 'nope.safetensors'}", lambda _: None)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a checkpoint"):
        resolve_init(f"file:{tmp_path / 'notes.txt'}", lambda _: None)
    with pytest.raises(DatasetError, match="is not scratch"):
        resolve_init("imagenet", lambda _: None)
