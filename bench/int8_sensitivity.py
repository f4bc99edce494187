"""Where `minilm-int8` loses top-10 agreement with fp32: quantise the exported fp32 graph
several ways (onnxruntime dynamic int8, per channel, with groups of MatMuls kept fp32, and
after SmoothQuant, the shipped recipe) and
report each variant's top-10 overlap with the fp32 ONNX graph on knowledge_scale.py's
claims and probes, and its texts/s beside fp32's in the same run (one thread each).

    PYTHONPATH=. .venv/bin/python bench/int8_sensitivity.py --claims 1500 --queries 150
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knowledge_scale import World

from medloop.knowledge.minilm import BATCH, encoder
from medloop.knowledge.minilm_onnx import export_fp32, export_smoothed, smoothing_scales
from medloop.knowledge.model import embedding_text

# Per encoder layer, the MatMuls with a weight initializer come in this order.
GROUPS = ("qkv", "attention-out", "ffn-in", "ffn-out")
VARIANTS: dict[str, dict[str, Any]] = {
    "all int8 (plain dynamic)": {},
    "reduce_range": {"reduce_range": True},
    "attention scores fp32": {"keep": ("scores",)},
    "ffn-out fp32": {"keep": ("ffn-out",)},
    "ffn-in fp32": {"keep": ("ffn-in",)},
    "ffn-in + ffn-out fp32": {"keep": ("ffn-in", "ffn-out")},
    "smoothquant a0.9, all int8": {"smooth": True},
    "smoothquant a0.9, ffn-out fp32 (shipped)": {"smooth": True, "keep": ("ffn-out",)},
}


def embed(path: Path, texts: list[str]) -> tuple[np.ndarray, float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    enc = encoder().tokenizer.encode_batch(texts)
    out = np.zeros((len(texts), 384), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids))
    t0 = time.process_time()
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        ids = np.zeros((len(idx), max(len(enc[i].ids) for i in idx)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, : len(enc[i].ids)] = enc[i].ids
            mask[row, : len(enc[i].ids)] = 1
        vec = sess.run(["embedding"], {"ids": ids, "mask": mask})[0]
        out[idx] = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    return out, len(texts) / max(time.process_time() - t0, 1e-9)


def main() -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=1500)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    world = World(args.seed)
    texts = [embedding_text(world.claim(i, f"cmp_{i % 200}")[0].statement) for i in range(args.claims)]
    probes = [world.query(i).text for i in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(Path(tmp) / "fp32.onnx")
        graph = onnx.load(str(fp32)).graph
        inits = {i.name for i in graph.initializer}
        matmuls = [n for n in graph.node if n.op_type == "MatMul"]
        weighted = [n.name for n in matmuls if n.input[1] in inits]
        names = {g: weighted[i :: len(GROUPS)] for i, g in enumerate(GROUPS)}
        names["scores"] = [n.name for n in matmuls if n.input[1] not in inits]

        def top(path: Path) -> tuple[np.ndarray, float]:
            vectors, rate = embed(path, texts)
            queries, _ = embed(path, probes)
            return np.argsort(-(queries @ vectors.T), axis=1)[:, :10], rate

        ref, ref_rate = top(fp32)
        print(f"{args.claims} claims, {args.queries} probes; fp32 ONNX {ref_rate:.0f} texts/CPU s")
        smoothed = export_smoothed(Path(tmp) / "smoothed.onnx", smoothing_scales())
        sgraph = onnx.load(str(smoothed)).graph
        sinits = {i.name for i in sgraph.initializer}
        sweighted = [n.name for n in sgraph.node if n.op_type == "MatMul" and n.input[1] in sinits]
        snames = {g: sweighted[i :: len(GROUPS)] for i, g in enumerate(GROUPS)}
        for label, spec in VARIANTS.items():
            out = Path(tmp) / "variant.onnx"
            groups = snames if spec.get("smooth") else names
            keep = [n for g in spec.get("keep", ()) for n in groups[g]]
            quantize_dynamic(
                str(smoothed if spec.get("smooth") else fp32),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=bool(spec.get("reduce_range")),
                nodes_to_exclude=keep,
            )
            got, rate = top(out)
            overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, got, strict=True)]))
            print(
                f"  {label:24s} overlap {overlap:.3f}  {rate:5.0f} texts/CPU s ({rate / ref_rate:.2f}x fp32)",
                flush=True,
            )


if __name__ == "__main__":
    main()
