"""`minilm-int8`: the shipped all-MiniLM-L6-v2 exported to ONNX from its safetensors
weights (the same forward pass as `minilm.py`), smoothed and quantised to int8 with
onnxruntime's dynamic quantisation (int8 weights, activations quantised per call), run by
onnxruntime.

Recipe (RECIPE, recorded in the workspace beside the embedder name): SmoothQuant (Xiao et
al., 2023) before quantisation: for every Linear, the input channels' absolute maxima
(measured once on CALIBRATION, sentences shaped like claim statements) and the weight
columns' maxima give per-channel scales s = a^alpha / w^(1-alpha) (alpha 0.9); the graph
multiplies the input by 1/s and the weight columns by s, which is exact in fp32 and moves
the activation outliers (a few LayerNorm channels) into the weights, where int8 is per
output channel. The four FFN-out MatMuls (input: the GELU output) stay fp32. Top-10
agreement with `minilm`: 0.953 on bench/int8_sensitivity.py's probes at 1.21x fp32 ONNX's
texts per CPU second, 0.940 on bench/embedder_overlap.py's (plain dynamic quantisation:
0.851 at 1.54x, and 0.82; README table).

The export is made offline on first use and cached under the user cache
(`$XDG_CACHE_HOME/medloop` or `~/.cache/medloop`; `MEDLOOP_CACHE_DIR` overrides), keyed by
the weights' hash and the recipe. Vectors differ slightly from `minilm` (and from another
recipe), so a workspace indexed with one needs `medloop knowledge rebuild --reembed` to
switch.
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
RECIPE = "smoothquant-a0.9-ffnout-fp32-v1"  # changes whenever the vectors would change
SMOOTH_ALPHA = 0.9
# Claim-like calibration sentences (task, change, effect, dataset, site): only activation
# maxima per channel are taken from them, which depend on the model more than on the text.
_SUBJECTS = (
    "changing lr 0.001 -> 0.0003",
    "loss dice -> dicece",
    "model unet -> segresnet",
    "spatial augmentation",
    "batch size 2 -> 8",
    "deep supervision",
    "test-time flips",
    "small-blob removal",
    "an S2-UniSeg pre-trained init",
    "a LoRA adapter",
)
_EFFECTS = (
    "raised mean dice by +0.012",
    "lowered hd95 by 1.4 mm",
    "did not change NSD",
    "raised AUROC by +0.03",
    "lowered accuracy at SNR 0 dB",
)
_WHERE = (
    "on liver CT (D1)",
    "at site B",
    "on brain MRI tumour cores",
    "on the kidney dataset",
    "on chest X-ray VQA",
    "on speech recordings",
)
CALIBRATION = [f"{w}: {s} {e}" for s in _SUBJECTS for e in _EFFECTS for w in _WHERE]
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


def _export(module: Any, dest: Path) -> None:
    import torch

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    with torch.inference_mode():
        torch.onnx.export(
            module,
            (ids, mask),
            str(dest),
            input_names=["ids", "mask"],
            output_names=["embedding"],
            dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,
        )


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

    _export(Forward(), dest)
    return dest


def smoothing_scales(alpha: float = SMOOTH_ALPHA) -> dict[str, Any]:
    """Per Linear (by weight prefix): 1/s for its input channels, s from the calibration
    activations' and the weight columns' absolute maxima."""
    import torch

    enc = encoder()
    amax: dict[str, Any] = {}
    proxy = copy.copy(enc)  # the shared encoder is left untouched

    def recording(x: Any, name: str) -> Any:
        peak = x.detach().abs().reshape(-1, x.shape[-1]).amax(0)
        amax[name] = torch.maximum(amax[name], peak) if name in amax else peak
        return enc._lin(x, name)

    proxy._lin = recording  # type: ignore[method-assign]
    proxy.embed(CALIBRATION)
    inv = {}
    for name, peak in amax.items():
        wmax = enc.w[f"{name}.weight"].abs().amax(0).clamp(min=1e-5)
        inv[name] = 1.0 / (peak.clamp(min=1e-5) ** alpha / wmax ** (1 - alpha)).clamp(min=1e-5)
    return inv


def export_smoothed(dest: Path, inv: dict[str, Any]) -> Path:
    """The fp32 graph with each Linear's input multiplied by 1/s and its weight columns by
    s (the same function in exact arithmetic)."""
    import torch

    enc = encoder()
    weights = dict(enc.w)
    for name, scale in inv.items():
        weights[f"{name}.weight"] = enc.w[f"{name}.weight"] / scale[None, :]
        weights[f"inv.{name}"] = scale
    names = {key: f"w{i}" for i, key in enumerate(weights)}

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for key, name in names.items():
                self.register_buffer(name, weights[key])

        def forward(self, ids: Any, mask: Any) -> Any:
            proxy = copy.copy(enc)
            proxy.w = {key: self.get_buffer(name) for key, name in names.items()}

            def lin(x: Any, name: str) -> Any:
                w = proxy.w
                return torch.nn.functional.linear(
                    x * w[f"inv.{name}"], w[f"{name}.weight"], w[f"{name}.bias"]
                )

            proxy._lin = lin  # type: ignore[method-assign]
            return proxy.forward(ids, mask)

    _export(Forward(), dest)
    return dest


def ffn_out_matmuls(path: Path, layers: int) -> list[str]:
    """Names of the FFN-out MatMuls (the 4th weighted MatMul of each layer, graph order)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}
    weighted = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    if len(weighted) != 4 * layers:
        raise MedloopError(f"unexpected MiniLM graph: {len(weighted)} weighted MatMuls, not {4 * layers}")
    return weighted[3::4]


def export_int8(dest: Path) -> Path:
    """Write the int8 ONNX model to `dest` (atomically): the smoothed fp32 graph, then
    onnxruntime.quantization.quantize_dynamic with the FFN-out MatMuls left fp32."""
    quant_type, quantize_dynamic = _quantisation()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        fp32 = export_smoothed(Path(tmp) / "fp32.onnx", smoothing_scales())
        int8 = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            str(fp32),
            str(int8),
            weight_type=quant_type.QInt8,
            per_channel=True,
            nodes_to_exclude=ffn_out_matmuls(fp32, encoder().layers),
        )
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
            dest = cache / f"minilm-int8-{RECIPE}-{_weights_key(src)}.onnx"
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
    recipe = RECIPE  # recorded beside the name: other vectors under the same name

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
