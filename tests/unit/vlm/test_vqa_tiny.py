"""The tiny LLaVA-style model: built from a config in code, loaded through the same
AutoProcessor / AutoModelForImageTextToText path as real weights, fine-tuned for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from medloop.core.specs import VqaConfig
from medloop.evaluation.vqa_extract import extract_choice
from medloop.experiments.vlm.hf import HFVisionModel
from medloop.experiments.vlm.prompting import prompt_text
from medloop.experiments.vlm.runner import run_benchmark
from medloop.experiments.vlm.tiny import build_tiny_model, patch_size_for
from medloop.experiments.vlm.train import finetune, vqa_examples
from medloop.experiments.vlm.tsv import VqaItem, read_tsv
from tests.unit.vlm.builders import COLOURS, colour_row, write_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[VqaItem]:
    colours = list(COLOURS)
    path = tmp_path_factory.mktemp("colours") / "c.tsv"
    return read_tsv(
        write_rows(path, [colour_row(str(i), colours[i % 4], colours[i % 4]) for i in range(16)])
    ).items


@pytest.fixture(scope="module")
def model_dir(items: list[VqaItem], tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return build_tiny_model(
        [prompt_text(i) for i in items], tmp_path_factory.mktemp("tiny") / "m", image_size=16
    )


def _accuracy(model: HFVisionModel, items: list[VqaItem]) -> float:
    answers = model.answer_batch(items, timeout_s=60)
    return sum(
        extract_choice(a.response or "", i.options)[0] == i.answer
        for a, i in zip(answers, items, strict=True)
    ) / len(items)


def test_saved_like_real_weights(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert patch_size_for(16) == 4 and patch_size_for(32) == 8 and patch_size_for(336) == 84


@pytest.mark.parametrize("method", ["full", "lora"])
def test_finetuning_learns_from_the_image(method: str, model_dir: Path, items: list[VqaItem]) -> None:
    # The question and the options are the same for every item: only the image tells the colour.
    model = HFVisionModel.load(model_dir, image_size=16, max_new_tokens=3)
    before = _accuracy(model, items)
    lr = 3e-3 if method == "full" else 1e-2
    config = VqaConfig(method=method, lr=lr, epochs=15, batch_size=8, lora_rank=8)
    history, facts = finetune(model, vqa_examples(model, items), config, seed=0)
    assert history[-1]["loss"] < history[0]["loss"]
    assert _accuracy(model, items) == 1.0 > before
    if method == "lora":
        assert 0 < facts["trainable_params"] < facts["total_params"]
    else:
        assert facts["trainable_params"] == facts["total_params"]


def test_generation_is_deterministic_and_times_out_per_batch(
    model_dir: Path, items: list[VqaItem], tmp_path: Path
) -> None:
    model = HFVisionModel.load(model_dir, image_size=16, max_new_tokens=6)
    first = [a.response for a in model.answer_batch(items[:4], timeout_s=60)]
    assert first == [a.response for a in model.answer_batch(items[:4], timeout_s=60)]
    late = model.answer_batch(items[:4], timeout_s=1e-6)
    assert all(a.error == "timeout after 1e-06s" for a in late)
    summary = run_benchmark(items, model, tmp_path / "p.jsonl", batch_size=5, timeout_s=60)
    assert (summary.n_items, summary.answered, summary.errors) == (16, 16, 0)
