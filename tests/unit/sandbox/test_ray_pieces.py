"""Ray inputs travel in pieces (issue 15 item 5): the driver packs an input through a
spool file and puts it piece by piece, a node fetches the pieces only when its cache lacks
the input's fingerprint, and a fetch that fails half-way leaves no cache entry behind."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from medloop.sandbox.ray_node import materialize, pack_chunks


def _dataset(root: Path, files: int = 12, size: int = 1 << 20) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    for i in range(files):
        (root / "imagesTr" / f"case_{i:03d}.bin").write_bytes(os.urandom(size))
    (root / "dataset.json").write_text('{"name": "x"}')
    return root


def test_an_input_is_put_in_pieces_and_never_whole_in_memory(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "ds")  # 12 MB
    sizes: list[int] = []
    store: list[bytes] = []

    def put(piece: bytes) -> int:
        sizes.append(len(piece))
        store.append(piece)
        return len(store) - 1

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        refs = pack_chunks(data, put, chunk_bytes=1 << 20)
        held = sum(sizes)  # what the fake object store keeps is not the packer's memory
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refs == list(range(len(sizes)))
    assert len(sizes) >= 12 and max(sizes) <= 1 << 20
    assert peak - held < 4 << 20, f"packing held {(peak - held) >> 20} MB besides the pieces"

    cache = tmp_path / "node" / "inputs"
    fetched: list[int] = []

    def fetch(ref: int) -> bytes:
        fetched.append(ref)
        return store[ref]

    path = materialize(cache, "fp1", "ds", refs, True, fetch)
    assert fetched == refs
    assert (path / "dataset.json").read_text() == '{"name": "x"}'
    for i in range(12):
        name = f"imagesTr/case_{i:03d}.bin"
        assert (path / name).read_bytes() == (data / name).read_bytes()

    def refuse(ref: int) -> bytes:
        raise AssertionError("a cached input was fetched again")

    assert materialize(cache, "fp1", "ds", refs, True, refuse) == path


def test_a_fetch_that_fails_half_way_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "ds", files=4)
    store: list[bytes] = []
    refs = pack_chunks(data, lambda piece: store.append(piece) or len(store) - 1, chunk_bytes=1 << 20)
    cache = tmp_path / "node" / "inputs"

    def flaky(ref: int) -> bytes:
        if ref == 2:
            raise ConnectionError("object lost")
        return store[ref]

    with pytest.raises(ConnectionError):
        materialize(cache, "fp2", "ds", refs, True, flaky)
    assert sorted(p.name for p in cache.iterdir()) == []  # no half-unpacked entry, no spool
    path = materialize(cache, "fp2", "ds", refs, True, store.__getitem__)
    assert len(list((path / "imagesTr").iterdir())) == 4


def test_a_single_file_input_comes_back_under_its_name(tmp_path: Path) -> None:
    single = tmp_path / "factor.txt"
    single.write_text("2")
    store: list[bytes] = []
    refs = pack_chunks(single, lambda piece: store.append(piece) or len(store) - 1)
    path = materialize(tmp_path / "cache", "fp3", "factor.txt", refs, False, store.__getitem__)
    assert path.name == "factor.txt" and path.read_text() == "2"
