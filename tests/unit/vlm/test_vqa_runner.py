"""The benchmark runner with a fake model: batching, skipped items, broken backends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from medloop.experiments.vlm.base import ModelAnswer
from medloop.experiments.vlm.prompting import chat_messages, prompt_text
from medloop.experiments.vlm.runner import run_benchmark
from medloop.experiments.vlm.tsv import VqaItem, read_tsv, write_tsv
from tests.unit.vlm.builders import colour_row, write_rows


class EchoModel:
    """Answers the first option; remembers the batches it was given."""

    name = "echo"

    def __init__(self, answers_per_batch: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.answers_per_batch = answers_per_batch

    def answer_batch(self, items: Sequence[VqaItem], *, timeout_s: float) -> list[ModelAnswer]:
        self.batches.append([i.index for i in items])
        n = len(items) if self.answers_per_batch is None else self.answers_per_batch
        return [ModelAnswer("A", None, 0.01) for _ in range(n)]

    def close(self) -> None:
        return None


@pytest.fixture
def items(tmp_path: Path) -> list[VqaItem]:
    rows = [colour_row(str(i), "red", "red") for i in range(7)]
    rows[2][1] = ""  # no image
    rows[5][4] = rows[5][5] = rows[5][6] = ""  # one option only
    return read_tsv(write_rows(tmp_path / "b.tsv", rows)).items


def test_batches_skip_what_cannot_be_posed(items: list[VqaItem], tmp_path: Path) -> None:
    model = EchoModel()
    events: list[dict[str, Any]] = []
    summary = run_benchmark(items, model, tmp_path / "p.jsonl", batch_size=2, emit=events.append)
    assert model.batches == [["0", "1"], ["3", "4"], ["6"]]
    assert (summary.n_items, summary.answered, summary.skipped, summary.errors) == (7, 5, 2, 0)
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [str(i) for i in range(7)]
    assert lines[2]["error"] == "missing image" and lines[5]["error"] == "fewer than 2 options (A)"
    assert events[-1] == {"event": "vqa_progress", "split": "eval", "done": 5, "total": 5}


def test_a_backend_that_loses_answers_is_a_fault(items: list[VqaItem], tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="gave 1 answers for 2 items"):
        run_benchmark(items, EchoModel(answers_per_batch=1), tmp_path / "p.jsonl", batch_size=2)
    assert not (tmp_path / "p.jsonl").exists()  # nothing half-written


def test_prompt_and_chat_message(items: list[VqaItem], tmp_path: Path) -> None:
    text = prompt_text(items[0])
    assert text.splitlines() == [
        "Question: What colour fills this image?",
        "Options:",
        "A. red",
        "B. green",
        "C. blue",
        "D. yellow",
        "Answer with the option's letter from the given choices directly.",
    ]
    [message] = chat_messages(items[0])
    image, part = message["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert part == {"type": "text", "text": text}
    # stripping answers for a held-out split keeps everything else
    stripped = read_tsv(write_tsv(tmp_path / "s.tsv", items, with_answers=False))
    assert not stripped.has_answers and [i.answer for i in stripped.items] == [None] * 7
    assert [i.options for i in stripped.items] == [i.options for i in items]
