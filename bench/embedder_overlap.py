"""Top-10 agreement of two embedders on knowledge_scale.py's claims and planning probes:
for each probe, the share of the fp32 embedder's 10 nearest claims (cosine) that the other
embedder also ranks in its top 10; plus each embedder's texts/s and one-query latency.

    PYTHONPATH=. .venv/bin/python bench/embedder_overlap.py --claims 5000 --queries 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knowledge_scale import World

from medloop.knowledge.embedders import make_embedder
from medloop.knowledge.model import embedding_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--reference", default="minilm")
    ap.add_argument("--candidate", default="minilm-int8")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    world = World(args.seed)
    texts = [embedding_text(world.claim(i, f"cmp_{i % 200}")[0].statement) for i in range(args.claims)]
    probes = [world.query(i).text for i in range(args.queries)]
    tops, rates, latency = {}, {}, {}
    for name in (args.reference, args.candidate):
        emb = make_embedder(name)
        emb.embed(["warm up"])
        t0, c0 = time.perf_counter(), time.process_time()
        vectors = emb.embed(texts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rates[name] = (len(texts) / wall, len(texts) / max(cpu, 1e-9))
        one = []
        for q in probes[:100]:
            t = time.perf_counter()
            emb.embed([q + " "])  # a fresh string: no query cache
            one.append(time.perf_counter() - t)
        latency[name] = (statistics.median(one) * 1e3, sorted(one)[int(0.95 * len(one))] * 1e3)
        queries = emb.embed(probes)
        tops[name] = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    ref, cand = tops[args.reference], tops[args.candidate]
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, cand, strict=True)]))
    print(
        f"{args.claims} claims, {args.queries} probes, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for name in (args.reference, args.candidate):
        wall_rate, cpu_rate = rates[name]
        p50, p95 = latency[name]
        print(
            f"  {name:12s} {wall_rate:7.0f} texts/s wall ({cpu_rate:.0f}/CPU s), one query p50 {p50:.1f} ms p95 {p95:.1f} ms"
        )
    print(f"top-10 overlap {args.candidate} vs {args.reference}: {overlap:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
