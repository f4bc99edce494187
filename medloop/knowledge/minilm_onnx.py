"""`minilm-int8`: the shipped all-MiniLM-L6-v2 exported to ONNX from its safetensors
weights (the same forward pass as `minilm.py`) and quantised to int8 with onnxruntime's
dynamic quantisation (int8 weights, activations quantised per call), run by onnxruntime.

The export is made offline on first use and cached under the user cache
(`$XDG_CACHE_HOME/medloop` or `~/.cache/medloop`; `MEDLOOP_CACHE_DIR` overrides), keyed by
the weights' hash. Vectors differ slightly from `minilm`, so it is its own embedder
name: a workspace indexed with one needs `medloop knowledge rebuild --reembed` to switch.

Top-10 agreement with `minilm` is ~0.85 on the bench's probes, below the 0.95 target:
bench/int8_sensitivity.py traces it to the per-tensor activation scale of the two FFN
MatMuls (keeping both fp32 gives 0.95 but no speed-up over fp32). See the README table.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import MedloopError
from medloop.knowledge.base import Vector
from medloop.knowledge.minilm import BATCH, SMALL, CachedEmbedder, encoder, model_dir

OPSET = 17
_lock = threading.Lock()
_sessions: dict[str, tuple[Any, Any]] = {}


def cache_dir() -> Path:
    explicit = os.environ.get("MEDLOOP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path("~/.cache").expanduser()) / "medloop"


def _weights_key(path: Path) -> str:
    digest = hashlib.sha256()
    with (path / "model.safetensors").open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _quantisation() -> tuple[Any, Any]:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MedloopError(
            f"MEDLOOP_EMBEDDER=minilm-int8 needs onnx and onnxruntime to export the model ({exc})",
            hint="pip install onnx onnxruntime, or use MEDLOOP_EMBEDDER=minilm",
        ) from None
    return QuantType, quantize_dynamic


def export_fp32(dest: Path) -> Path:
    """Write the fp32 ONNX graph of `minilm.py`'s forward pass (torch export) to `dest`."""
    import torch

    enc = encoder()
    names = {key: f"w{i}" for i, key in enumerate(enc.w)}

    class Forward(torch.nn.Module):
        """The encoder's weights as buffers, so the export stores them as initializers
        (quantize_dynamic only quantises MatMuls whose weight is an initializer)."""

        def __init__(self) -> None:
            super().__init__()
            for key, name in names.items():
                self.register_buffer(name, enc.w[key])

        def forward(self, ids: Any, mask: Any) -> Any:
            proxy = copy.copy(enc)
            proxy.w = {key: self.get_buffer(name) for key, name in names.items()}
            return proxy.forward(ids, mask)

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    with torch.inference_mode():
        torch.onnx.export(
            Forward(),
            (ids, mask),
            str(dest),
            input_names=["ids", "mask"],
            output_names=["embedding"],
            dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return dest


def export_int8(dest: Path) -> Path:
    """Write the int8 ONNX model to `dest` (atomically): torch export of the fp32 forward
    pass, then onnxruntime.quantization.quantize_dynamic."""
    quant_type, quantize_dynamic = _quantisation()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        fp32 = export_fp32(Path(tmp) / "fp32.onnx")
        int8 = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(fp32), str(int8), weight_type=quant_type.QInt8, per_channel=True)
        int8.replace(dest)
    return dest


_paths: dict[tuple[str, str], Path] = {}  # (weights folder, cache folder) -> model file


def model_path() -> Path:
    """The cached int8 model for the installed weights (exported on first use; the
    weights are hashed once per process)."""
    src, cache = model_dir(), cache_dir()
    key = (str(src), str(cache))
    with _lock:
        dest = _paths.get(key)
        if dest is None or not dest.is_file():
            dest = cache / f"minilm-int8-{_weights_key(src)}.onnx"
            if not dest.is_file():
                export_int8(dest)
            _paths[key] = dest
        return dest


def _session(threads: int) -> Any:
    import onnxruntime as ort

    key = f"{model_path()}:{threads}"
    with _lock:
        if key not in _sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(key.rsplit(":", 1)[0], opts, providers=["CPUExecutionProvider"])
            _sessions[key] = (sess, None)
        return _sessions[key][0]


class MiniLMInt8Embedder(CachedEmbedder):
    """all-MiniLM-L6-v2, int8 ONNX on onnxruntime; 384-d, L2-normalised."""

    name = "minilm-int8"
    dim = 384

    def _run(self, texts: Sequence[str]) -> Vector:
        tokenizer = encoder().tokenizer
        sess = _session(1 if len(texts) <= SMALL else max(1, min(4, os.cpu_count() or 1)))
        encodings = tokenizer.encode_batch(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            vec = sess.run(["embedding"], {"ids": ids, "mask": mask})[0]
            out[idx] = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return out
