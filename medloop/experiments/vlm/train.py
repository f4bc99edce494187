"""Supervised fine-tuning of a vision-language model on VQA items (and caption pairs).

Each example is the model's chat prompt for the item (image + question + options) followed
by the answer letter and the end-of-sequence token; the loss covers the answer tokens only.
`method` lora wraps the language model's attention projections with peft LoRA adapters
(the LLaVA projector, when there is one, is trained fully); full trains every weight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from medloop.core.specs import VqaConfig
from medloop.experiments.vlm.hf import HFVisionModel
from medloop.experiments.vlm.prompting import load_image, prompt_text
from medloop.experiments.vlm.tsv import VqaItem

# LoRA goes on the attention projections of the language model only (not the vision tower).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$"
PROJECTORS = ("multi_modal_projector",)
IGNORE = -100  # label value the loss skips
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Example:
    image: Any  # PIL image, already resized
    prompt: str  # chat prompt, ready for the answer
    target: str  # answer text (+ end of sequence)


def vqa_examples(model: HFVisionModel, items: Sequence[VqaItem]) -> list[Example]:
    eos = model.tokenizer.eos_token or ""
    return [
        Example(
            load_image(item, model.image_size), model.chat_prompt(prompt_text(item)), f"{item.answer}{eos}"
        )
        for item in items
        if item.answer
    ]


def caption_examples(model: HFVisionModel, items: Sequence[tuple[VqaItem, str]]) -> list[Example]:
    eos = model.tokenizer.eos_token or ""
    prompt = model.chat_prompt("Describe this image.")
    return [Example(load_image(item, model.image_size), prompt, f"{caption}{eos}") for item, caption in items]


def apply_method(model: HFVisionModel, config: VqaConfig) -> tuple[int, int]:
    """Make the right weights trainable; returns (trainable, total) parameter counts."""
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        names = [name for name, _ in model.model.named_modules()]
        projectors = [p for p in PROJECTORS if any(n.endswith(p) for n in names)]
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=LORA_TARGETS,
            modules_to_save=projectors or None,
        )
        try:
            model.model = get_peft_model(model.model, lora)
        except ValueError as exc:
            raise ValueError(f"LoRA found no attention projections in the language model: {exc}") from None
    else:
        for param in model.model.parameters():
            param.requires_grad_(True)
    params = list(model.model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def _batch(model: HFVisionModel, examples: Sequence[Example], prompt_lengths: Sequence[int]) -> Any:
    batch = model.encode(
        [e.prompt + e.target for e in examples], [e.image for e in examples], padding_side="right"
    )
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = IGNORE
    for row, length in enumerate(prompt_lengths):
        labels[row, :length] = IGNORE
    batch["labels"] = labels
    return batch


def finetune(
    model: HFVisionModel,
    examples: list[Example],
    config: VqaConfig,
    *,
    seed: int,
    emit: Emit | None = None,
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train in place for `config.epochs` passes; returns (per-epoch history, facts)."""
    import torch

    start = time.monotonic()
    trainable, total = apply_method(model, config)
    # prompt lengths in tokens (image tokens included), to mask the prompt out of the loss
    lengths = [
        int(model.encode([e.prompt], [e.image], padding_side="right")["input_ids"].shape[1]) for e in examples
    ]
    params = [p for p in model.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.model.train()
    history: list[dict[str, float]] = []
    steps = 0
    for epoch in range(config.epochs):
        epoch_start = time.monotonic()
        order = torch.randperm(len(examples), generator=generator).tolist()
        losses = []
        for lo in range(0, len(order), config.batch_size):
            idx = order[lo : lo + config.batch_size]
            batch = _batch(model, [examples[i] for i in idx], [lengths[i] for i in idx])
            loss = model.model(**batch).loss
            value = float(loss.detach().item())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at epoch {epoch + 1}, step {steps + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(value)
            steps += 1
        record = {
            "epoch": float(epoch + 1),
            "loss": sum(losses) / len(losses),
            "seconds": time.monotonic() - epoch_start,
        }
        history.append(record)
        if emit is not None:
            emit({"event": "epoch", **record})
    model.model.eval()
    facts = {
        "method": config.method,
        "trainable_params": trainable,
        "total_params": total,
        "steps": steps,
        "examples": len(examples),
        "train_s": round(time.monotonic() - start, 3),
    }
    return history, facts
