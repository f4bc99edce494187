"""The VQA runner's batching vs one item at a time: same tiny model, same items.

Builds the tiny LLaVA-style model (random weights, greedy decoding), then answers the same
VQA items converted from the phantom with batch size 1 and with batch size B, alternately
in this process (1, B, 1, B, ...), one CPU thread. Prints items/s side by side, the
throughput ratio batched / single, and checks that both give the same answers.

    python bench/vqa_runner.py [--items 64] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from medloop.experiments.dataset import synth_phantom
from medloop.experiments.vlm.convert import convert_dataset
from medloop.experiments.vlm.hf import HFVisionModel
from medloop.experiments.vlm.prompting import prompt_text
from medloop.experiments.vlm.runner import run_benchmark
from medloop.experiments.vlm.tiny import build_tiny_model
from medloop.experiments.vlm.tsv import read_tsv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-vqa-"))
    data = synth_phantom(work / "Dataset990_Bench", cases=max(4, args.items // 4), seed=0, test_cases=0)
    items = read_tsv(convert_dataset(data, work / "vqa", seed=0) / "train.tsv").items[: args.items]
    model_dir = build_tiny_model([prompt_text(i) for i in items], work / "model", image_size=32)
    model = HFVisionModel.load(model_dir, image_size=32, max_new_tokens=8)
    run_benchmark(items[:4], model, work / "warm.jsonl", batch_size=4)  # first-call costs
    rates: dict[int, list[float]] = {1: [], args.batch: []}
    answers: dict[int, str] = {}
    for _ in range(args.repeats):
        for batch in (1, args.batch):
            out = work / f"b{batch}.jsonl"
            start = time.perf_counter()
            run_benchmark(items, model, out, batch_size=batch, timeout_s=600)
            rates[batch].append(len(items) / (time.perf_counter() - start))
            answers[batch] = "\n".join(json.loads(line)["response"] for line in out.read_text().splitlines())
    single, batched = statistics.median(rates[1]), statistics.median(rates[args.batch])
    print(f"items={len(items)} repeats={args.repeats} threads=1 model=tiny-llava max_new_tokens=8")
    print(f"batch 1:  {single:8.1f} items/s  (median of {args.repeats})")
    print(f"batch {args.batch}: {batched:8.1f} items/s  (median of {args.repeats})")
    print(f"ratio batched / single: {batched / single:.2f}x")
    print(f"same answers: {answers[1] == answers[args.batch]}")


if __name__ == "__main__":
    main()
