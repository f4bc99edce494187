"""The no-follow reader of job outputs (core.safe_tree, engine.outputs): every kind of
entry a hostile job can plant is refused before the host opens what lies behind it."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from medloop.core import safe_tree
from medloop.core.safe_tree import UnsafeOutput
from medloop.engine.outputs import OutputTree


@pytest.fixture
def out(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    (root / "predictions" / "eval").mkdir(parents=True)
    (root / "result.json").write_text('{"status": "completed"}')
    (root / "predictions" / "eval" / "a.nii.gz").write_bytes(b"plain")
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.txt"
    path.write_text("SECRET")
    path.chmod(0o600)
    return path


def test_a_plain_tree_reads_and_snapshots(out: Path, tmp_path: Path) -> None:
    names = [e.path.as_posix() for e in safe_tree.entries(out)]
    assert names == ["predictions", "predictions/eval", "predictions/eval/a.nii.gz", "result.json"]
    assert safe_tree.read_bytes(out, "result.json") == b'{"status": "completed"}'
    with OutputTree(out, tmp_path / "scratch") as tree:
        snap = tree.folder("predictions/eval")
        assert snap is not None and (snap / "a.nii.gz").read_bytes() == b"plain"
        assert (snap / "a.nii.gz").stat().st_mode & 0o777 == 0o600
        assert tree.folder("predictions/test") is None
    assert not snap.exists()  # the snapshot is gone with the context


@pytest.mark.parametrize("rel", ["result.json", "predictions/eval/b.nii.gz", "predictions/test"])
def test_symlinks_anywhere_are_refused(out: Path, secret: Path, tmp_path: Path, rel: str) -> None:
    target = out / rel
    target.unlink(missing_ok=True)
    target.symlink_to(secret if "." in rel else secret.parent)
    with pytest.raises(UnsafeOutput, match="symbolic link"):
        safe_tree.entries(out)
    if "." in rel:
        with pytest.raises(UnsafeOutput):
            safe_tree.read_bytes(out, rel)
        with OutputTree(out, tmp_path / "s") as tree, pytest.raises(UnsafeOutput):
            tree.file(rel)


def test_a_symlinked_parent_folder_is_never_walked_into(out: Path, secret: Path) -> None:
    (secret.parent / "labels").mkdir()
    (secret.parent / "labels" / "x.json").write_text("{}")
    (out / "predictions").rename(out / "old")
    (out / "predictions").symlink_to(secret.parent / "labels")
    with pytest.raises(UnsafeOutput):
        safe_tree.read_bytes(out, "predictions/x.json")
    assert safe_tree.is_file(out, "predictions/x.json") is False


def test_hard_links_fifos_and_sockets_are_refused(out: Path, secret: Path, tmp_path: Path) -> None:
    os.link(secret, out / "linked.bin")
    with pytest.raises(UnsafeOutput, match="hard link"):
        safe_tree.entries(out)
    with pytest.raises(UnsafeOutput, match="hard link"):
        safe_tree.read_bytes(out, "linked.bin")
    (out / "linked.bin").unlink()

    os.mkfifo(out / "predictions" / "eval" / "b.nii.gz")
    # A FIFO must neither block the reader nor be read.
    box: list[BaseException] = []

    def read() -> None:
        try:
            safe_tree.read_bytes(out, "predictions/eval/b.nii.gz")
        except UnsafeOutput as exc:
            box.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive() and "FIFO" in str(box[0])
    (out / "predictions" / "eval" / "b.nii.gz").unlink()

    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(out / "s.sock"))
    try:
        with pytest.raises(UnsafeOutput, match="socket"):
            safe_tree.entries(out)
    finally:
        sock.close()


def test_device_nodes_are_refused(out: Path) -> None:
    try:
        os.mknod(out / "null", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.fail("this test needs CAP_MKNOD (it runs as root in CI and here)")
    with pytest.raises(UnsafeOutput, match="device"):
        safe_tree.entries(out)


def test_caps_on_entries_and_bytes(out: Path) -> None:
    for i in range(20):
        (out / f"d{i}").mkdir()
    with pytest.raises(UnsafeOutput, match="entry limit"):
        safe_tree.entries(out, max_entries=10)
    (out / "big.bin").write_bytes(b"x" * 4096)
    with pytest.raises(UnsafeOutput, match="byte limit"):
        safe_tree.entries(out, max_bytes=1024)
    with pytest.raises(UnsafeOutput, match="larger than"):
        safe_tree.read_bytes(out, "big.bin", max_bytes=1 << 10)


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../b"])
def test_paths_that_climb_out_are_refused(out: Path, rel: str) -> None:
    with pytest.raises(UnsafeOutput, match="relative"):
        safe_tree.read_bytes(out, rel)


def test_tar_of_a_tree_has_only_files_and_folders(out: Path, secret: Path) -> None:
    data = safe_tree.tar_tree(out)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == [
            "predictions",
            "predictions/eval",
            "predictions/eval/a.nii.gz",
            "result.json",
        ]
    (out / "abs").symlink_to(secret)
    with pytest.raises(UnsafeOutput, match="symbolic link"):
        safe_tree.tar_tree(out)


def test_a_ray_node_keeps_the_first_failure_reason_when_the_output_is_also_unsafe(out: Path) -> None:
    """A job stopped for its output quota that also left a symlink: the result names both,
    the quota first (before, the quota reason was overwritten by "unsafe job output")."""
    from medloop.core.records import JobLimits, JobResult, JobSpec, Provenance
    from medloop.sandbox.ray_node import pack_output

    (out / "link").symlink_to("/etc/passwd")
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="a", ended_at="b")
    job = JobSpec(key="k", command=["true"], inputs={}, limits=JobLimits(timeout_s=60.0, memory_mb=512))
    quota = "wrote more than the 1 MB output limit"
    failed = JobResult(
        key="k",
        status="quota_exceeded",
        exit_code=None,
        wall_s=1.0,
        out_dir=out,
        reason=quota,
        provenance=prov,
    )
    result, blob = pack_output(failed, job)
    assert result.status == "quota_exceeded"
    assert (
        result.reason is not None and result.reason.startswith(quota) and "unsafe job output" in result.reason
    )
    with tarfile.open(fileobj=io.BytesIO(blob)) as shipped:
        assert shipped.getnames() == []  # nothing shipped
    ok = failed.model_copy(update={"status": "succeeded", "reason": None})
    result, _ = pack_output(ok, job)
    assert (
        result.status == "failed"
        and result.reason is not None
        and result.reason.startswith("unsafe job output")
    )
