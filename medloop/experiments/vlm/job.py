"""The VQA trial inside the sandbox: fine-tune a VLM on the training items (or not), then
answer the evaluation and test items with the benchmark runner.

Inputs (read-only, under the spec's folder):
    train/train.tsv      training items with answers (+ train/captions.tsv, optional)
    eval/eval.tsv        evaluation items, answers stripped
    test/test.tsv        test items, answers stripped (optional)
    model/               the weights when `model_path` is a folder the host mounted
Outputs: predictions/eval.jsonl, predictions/test.jsonl (raw answers; the host scores
them), result.json, and for LoRA the adapter weights under checkpoint/.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import VqaConfig
from medloop.experiments.vlm.prompting import prompt_text
from medloop.experiments.vlm.runner import run_benchmark
from medloop.experiments.vlm.tsv import VqaItem, VqaTable, item_problem, read_tsv, select

Emit = Callable[[dict[str, Any]], None]
# LoRA adapters are small; anything bigger is not kept (the host caps the output size).
MAX_ADAPTER_BYTES = 64 * 1024 * 1024


def _table(path: Path) -> VqaTable | None:
    return read_tsv(path) if path.is_file() else None


def _captions(path: Path) -> list[tuple[VqaItem, str]]:
    """(image-only item, caption) pairs from captions.tsv."""
    if not path.is_file():
        return []
    csv.field_size_limit(2**31 - 1)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [
        (
            VqaItem(index=row["index"], question="", options={}, answer=None, image=row["image"]),
            row["caption"],
        )
        for row in rows
        if row.get("image") and row.get("caption")
    ]


def resolve_model(config: VqaConfig, in_dir: Path, texts: list[str], work: Path) -> Path:
    """The model folder: a freshly built tiny model, the host-mounted `model/`, or the path."""
    if config.model_path == "tiny":
        from medloop.experiments.vlm.tiny import build_tiny_model

        return build_tiny_model(texts, work / "tiny", image_size=config.image_size)
    mounted = in_dir / "model"
    if mounted.is_dir():
        return mounted
    path = Path(config.model_path).expanduser()
    if not path.is_dir():
        raise ValueError(f"model_path {config.model_path}: no such folder inside the sandbox")
    return path


def run_vqa(spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Emit) -> JobOutcome:
    import torch

    from medloop.experiments.job import versions
    from medloop.experiments.vlm.hf import HFVisionModel
    from medloop.experiments.vlm.train import caption_examples, finetune, vqa_examples

    config = spec.config_as(VqaConfig)
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(spec.seed)
    start = time.monotonic()
    train = _table(in_dir / "train" / "train.tsv")
    evaluation = _table(in_dir / "eval" / "eval.tsv")
    test = _table(in_dir / "test" / "test.tsv")
    if evaluation is None:
        raise ValueError(
            f"{in_dir / 'eval' / 'eval.tsv'}: missing; the host stages the evaluation items there"
        )
    usable = [i for i in (train.items if train else []) if item_problem(i, need_answer=True) is None]
    train_items = select(usable, config.train_categories)
    if config.max_train_items:
        train_items = train_items[: config.max_train_items]
    captions = _captions(in_dir / "train" / "captions.tsv") if config.captions else []
    if config.method != "none" and config.epochs > 0 and not (train_items or captions):
        raise ValueError(f"no training items match train_categories={config.train_categories!r}")
    # the tiny model's vocabulary: every text the job may see (no answers of held-out items)
    seen = [*(train.items if train else []), *evaluation.items, *(test.items if test else [])]
    texts = [prompt_text(i) for i in seen] + [c for _, c in captions] + ["Describe this image."]

    work = Path(tempfile.mkdtemp(prefix="medloop-vlm-"))
    try:
        model_dir = resolve_model(config, in_dir, texts, work)
        model = HFVisionModel.load(
            model_dir, image_size=config.image_size, max_new_tokens=config.max_new_tokens, dtype=config.dtype
        )
        emit({"event": "model", "path": str(config.model_path), "device": model.device})
        history: list[dict[str, float]] = []
        facts: dict[str, Any] = {"method": config.method}
        if config.method != "none" and config.epochs > 0:
            examples = vqa_examples(model, train_items) + caption_examples(model, captions)
            history, facts = finetune(model, examples, config, seed=spec.seed, emit=emit)
        predictions: dict[str, str] = {}
        runs: dict[str, dict[str, float]] = {}
        for split, table in (("eval", evaluation), ("test", test)):
            if table is None:
                continue
            rel = f"predictions/{split}.jsonl"
            summary = run_benchmark(
                table.items,
                model,
                out_dir / rel,
                batch_size=config.eval_batch_size,
                timeout_s=config.item_timeout,
                emit=emit,
                split=split,
            )
            predictions[split] = rel
            runs[split] = summary.as_dict()
        checkpoint = _save_adapter(model.model, out_dir) if config.method == "lora" else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import transformers

    return JobOutcome(
        status="completed",
        predictions=predictions,
        history=history,
        efficiency={"wall_s": round(time.monotonic() - start, 3), "inference": runs, **facts},
        versions={**versions(), "transformers": str(transformers.__version__), **_peft_version()},
        checkpoint=checkpoint,
        setup={
            "model_path": config.model_path,
            "device": model.device,
            "train_items": len(train_items),
            "caption_pairs": len(captions),
            "train_categories": config.train_categories,
            "skipped_train_rows": len(train.problems) if train else 0,
        },
    )


def _peft_version() -> dict[str, str]:
    import sys

    peft = sys.modules.get("peft")
    return {"peft": str(peft.__version__)} if peft is not None else {}


def _save_adapter(model: Any, out_dir: Path) -> str | None:
    """LoRA adapter weights (safetensors) under checkpoint/, if small enough."""
    dest = out_dir / "checkpoint"
    model.save_pretrained(str(dest), safe_serialization=True)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    if size > MAX_ADAPTER_BYTES:
        shutil.rmtree(dest, ignore_errors=True)
        return None
    return "checkpoint"
