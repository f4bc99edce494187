"""The model boundary of the benchmark runner: anything that answers a batch of VQA items.

Backends: a local Hugging Face model (`hf.py`, runs in the sandbox) and, on the host, any
litellm chat model (`medloop.engine.vqa_api`). Models answer in free text; the host
extracts the chosen option later, so a backend never sees the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from medloop.experiments.vlm.tsv import VqaItem


@dataclass(frozen=True)
class ModelAnswer:
    response: str | None  # the model's raw text; None when it gave none
    error: str | None = None  # "timeout after 30s", an exception line; None when it answered
    seconds: float = 0.0  # wall time spent on this item (a batch's time is shared out)


class AnswerModel(Protocol):
    name: str

    def answer_batch(self, items: Sequence[VqaItem], *, timeout_s: float) -> list[ModelAnswer]:
        """One answer per item, in order. A failure or timeout of one item is an answer with
        `error` set, never an exception; only a broken backend raises."""
        ...

    def close(self) -> None: ...
