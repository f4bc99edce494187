"""`minilm-int8`: MiniLM exported to ONNX from the shipped weights, int8 by onnxruntime's
dynamic quantisation, cached, close to the fp32 embedder, and a workspace indexed with
one embedder refuses the other until `knowledge rebuild --reembed`."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require

pytestmark = pytest.mark.slow

SENTENCES = [
    "On D1 (liver CT), changing lr 0.001 -> 0.0003 raised mean dice by +0.012",
    "spatial augmentation improved spleen segmentation at site B",
    "dicece loss lowered hd95 on brain MRI tumour cores",
    "a deeper network did not change mean dice on the kidney dataset",
]


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ok = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
    require("onnx", ok, "pip install onnx (medloop[int8]); onnxruntime comes with chromadb")
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDLOOP_CACHE_DIR", str(cache))
    yield cache
    mp.undo()


def test_int8_export_is_cached_small_and_close_to_fp32(int8_cache: Path) -> None:
    from medloop.knowledge.embedders import make_embedder
    from medloop.knowledge.minilm import model_dir
    from medloop.knowledge.minilm_onnx import model_path

    path = model_path()
    assert path.parent == int8_cache and path.is_file()
    fp32_bytes = (model_dir() / "model.safetensors").stat().st_size
    assert path.stat().st_size < 0.4 * fp32_bytes  # int8 weights, not a renamed fp32 graph
    mtime = path.stat().st_mtime
    assert model_path() == path and path.stat().st_mtime == mtime  # reused, not exported again
    fp32, int8 = make_embedder("minilm"), make_embedder("minilm-int8")
    assert int8.name == "minilm-int8" and int8.dim == 384
    a, b = fp32.embed(SENTENCES), int8.embed(SENTENCES)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > 0.97 and not np.allclose(a, b, atol=1e-6)  # close, but really quantised
    # same ranking of the other sentences for each sentence
    assert (np.argsort(-(a @ a.T), axis=1) == np.argsort(-(b @ b.T), axis=1)).mean() >= 0.75


def test_switching_embedder_needs_a_rebuild(int8_cache: Path, tmp_path: Path) -> None:
    from medloop.core.errors import MedloopError
    from medloop.core.settings import Settings
    from medloop.core.store import open_store
    from medloop.knowledge.factory import make_knowledge_base

    ws = tmp_path / "ws"
    first = Settings(workspace=ws, embedder="minilm", vector_index="memory")
    make_knowledge_base(first, open_store(first.db_path))
    other = Settings(workspace=ws, embedder="minilm-int8", vector_index="memory")
    with pytest.raises(MedloopError) as err:
        make_knowledge_base(other, open_store(other.db_path))
    assert "minilm-int8" in err.value.message and "knowledge rebuild --reembed" in (err.value.hint or "")


def test_vectors_of_an_earlier_int8_recipe_need_a_rebuild(int8_cache: Path, tmp_path: Path) -> None:
    """A workspace indexed by `minilm-int8` before SmoothQuant (same name, other vectors) is
    refused until `knowledge rebuild --reembed`, which records the recipe; before, it
    opened and mixed the two kinds of vectors silently. The model cache is keyed by the
    recipe too."""
    from medloop.core.errors import MedloopError
    from medloop.core.settings import Settings
    from medloop.core.store import open_store
    from medloop.knowledge.factory import make_knowledge_base
    from medloop.knowledge.minilm_onnx import RECIPE, model_path

    assert RECIPE in model_path().name
    settings = Settings(workspace=tmp_path / "ws", embedder="minilm-int8", vector_index="memory")
    store = open_store(settings.db_path)
    store.meta.set("embedder", "minilm-int8")  # as the earlier recipe left it: no recipe
    store.meta.set("embedder_dim", "384")
    with pytest.raises(MedloopError) as err:
        make_knowledge_base(settings, store)
    assert "earlier recipe" in err.value.message and "knowledge rebuild --reembed" in (err.value.hint or "")
    kb = make_knowledge_base(settings, store, reconcile=False, reembed=True)
    kb.rebuild(reembed=True)
    assert store.meta.get("embedder_recipe") == RECIPE
    make_knowledge_base(settings, store)  # opens now
