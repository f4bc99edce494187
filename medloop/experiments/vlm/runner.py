"""The benchmark runner: put every item of a VQA table to a model in batches, with a
per-item time limit, and write the raw answers as JSON lines (one per item, file order).

Scoring is not done here: the answers of held-out splits are not in the files a job sees,
and the host extracts and scores every response itself (medloop.evaluation.vqa).
Items that cannot be posed (no image, fewer than two options) are recorded with an error
and never sent to the model; one bad item never stops a run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medloop.experiments.vlm.base import AnswerModel, ModelAnswer
from medloop.experiments.vlm.tsv import VqaItem, item_problem

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunSummary:
    n_items: int
    answered: int  # items the model answered without error
    errors: int  # items that timed out or failed in the model
    skipped: int  # items that could not be posed
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return {
            "n_items": self.n_items,
            "answered": self.answered,
            "errors": self.errors,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(self.n_items / self.seconds, 3) if self.seconds > 0 else 0.0,
        }


def answer_concurrently(
    ask: Callable[[VqaItem], str], items: Sequence[VqaItem], *, timeout_s: float
) -> list[ModelAnswer]:
    """Ask about every item at once, one thread each; an item still unanswered after
    `timeout_s` is a timeout (its thread is abandoned, its late answer ignored)."""
    if not items:
        return []

    def timed(item: VqaItem) -> tuple[str, float]:
        start = time.monotonic()
        return ask(item), time.monotonic() - start

    pool = ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="vqa")
    try:
        futures: list[Future[tuple[str, float]]] = [pool.submit(timed, item) for item in items]
        wait(futures, timeout=timeout_s)
        out = []
        for future in futures:
            if not future.done():
                out.append(ModelAnswer(None, f"timeout after {timeout_s:g}s", timeout_s))
                continue
            exc = future.exception()
            if exc is not None:
                out.append(ModelAnswer(None, f"{type(exc).__name__}: {exc}"[:500]))
                continue
            text, seconds = future.result()
            out.append(ModelAnswer(text, None, seconds))
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_benchmark(
    items: Sequence[VqaItem],
    model: AnswerModel,
    out_path: Path,
    *,
    batch_size: int = 8,
    timeout_s: float = 60.0,
    emit: Emit | None = None,
    split: str = "eval",
) -> RunSummary:
    """Answer `items` with `model` and write `out_path` (JSON lines: index, response,
    error, seconds), atomically. Returns counts and the wall time."""
    start = time.monotonic()
    records: dict[str, dict[str, Any]] = {}
    postable: list[VqaItem] = []
    for item in items:
        problem = item_problem(item, need_answer=False)
        if problem is None:
            postable.append(item)
        else:
            records[item.index] = {"index": item.index, "response": None, "error": problem, "seconds": 0.0}
    answered = errors = 0
    for lo in range(0, len(postable), batch_size):
        batch = postable[lo : lo + batch_size]
        answers = model.answer_batch(batch, timeout_s=timeout_s)
        if len(answers) != len(batch):
            raise RuntimeError(f"model {model.name} gave {len(answers)} answers for {len(batch)} items")
        for item, answer in zip(batch, answers, strict=True):
            records[item.index] = {
                "index": item.index,
                "response": answer.response,
                "error": answer.error,
                "seconds": round(answer.seconds, 4),
            }
            if answer.error is None:
                answered += 1
            else:
                errors += 1
        if emit is not None:
            emit({"event": "vqa_progress", "split": split, "done": lo + len(batch), "total": len(postable)})
    write_jsonl(out_path, [records[item.index] for item in items])
    return RunSummary(len(items), answered, errors, len(items) - len(postable), time.monotonic() - start)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
