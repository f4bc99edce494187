"""A local Hugging Face vision-language model as an AnswerModel.

Loaded from a folder with `AutoProcessor` and `AutoModelForImageTextToText`
(`local_files_only`, so nothing is fetched; HF_HUB_OFFLINE=1 in the sandbox too). Prompts
go through the processor's chat template; images are resized to `image_size` with PIL
before the processor sees them (no torchvision). Generation is greedy, in batches
(left padding), with `max_time` as the per-batch time limit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medloop.experiments.vlm.base import ModelAnswer
from medloop.experiments.vlm.prompting import load_image, prompt_text
from medloop.experiments.vlm.tsv import VqaItem


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def quiet_transformers() -> None:
    """No progress bars or advisory warnings in job logs (they are streamed to the host)."""
    import transformers.utils.logging

    logging: Any = transformers.utils.logging  # untyped module
    logging.set_verbosity_error()
    logging.disable_progress_bar()


class HFVisionModel:
    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str,
        image_size: int,
        max_new_tokens: int,
        device: str,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.image_size = image_size
        self.max_new_tokens = max_new_tokens
        self.device = device

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        image_size: int,
        max_new_tokens: int = 8,
        dtype: str = "auto",
        device: str | None = None,
    ) -> HFVisionModel:
        """Load weights and processor from `path`. ValueError when it is not a model folder."""
        quiet_transformers()
        if not (path / "config.json").is_file():
            raise ValueError(f"model_path {path}: no config.json (not a Hugging Face model folder)")
        import transformers

        tf: Any = transformers  # partly typed library: used through Any
        device = device or pick_device()
        processor = tf.AutoProcessor.from_pretrained(str(path), local_files_only=True)
        model = tf.AutoModelForImageTextToText.from_pretrained(
            str(path), local_files_only=True, dtype=torch_dtype(dtype, device)
        )
        model.to(device)
        model.eval()
        return cls(
            model,
            processor,
            name=path.name,
            image_size=image_size,
            max_new_tokens=max_new_tokens,
            device=device,
        )

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def chat_prompt(self, text: str) -> str:
        """The model's own chat format for one user turn with an image, ready to answer."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        if getattr(self.processor, "chat_template", None):
            rendered: str = self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return rendered
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"{image_token}\n{text}\n"

    def encode(self, texts: list[str], images: list[Any], *, padding_side: str) -> Any:
        self.tokenizer.padding_side = padding_side
        batch = self.processor(text=texts, images=images, return_tensors="pt", padding=True).to(self.device)
        if "pixel_values" in batch:  # images in the model's dtype (bfloat16 on GPUs)
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        return batch

    def answer_batch(self, items: Sequence[VqaItem], *, timeout_s: float) -> list[ModelAnswer]:
        import torch

        if not items:
            return []
        start = time.monotonic()
        try:
            images = [load_image(item, self.image_size) for item in items]
            texts = [self.chat_prompt(prompt_text(item)) for item in items]
            batch = self.encode(texts, images, padding_side="left")
            with torch.inference_mode():
                out = self.model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    max_time=timeout_s,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
        except (RuntimeError, ValueError, OSError) as exc:
            # one batch failing (an odd image, out of memory) is an error for its items
            message = f"{type(exc).__name__}: {exc}"[:500]
            return [ModelAnswer(None, message, (time.monotonic() - start) / len(items)) for _ in items]
        elapsed = time.monotonic() - start
        new = out[:, batch["input_ids"].shape[1] :]
        texts_out = self.processor.batch_decode(new, skip_special_tokens=True)
        eos = self.tokenizer.eos_token_id
        per_item = elapsed / len(items)
        answers = []
        for row, text in zip(new.tolist(), texts_out, strict=True):
            finished = eos in row or len(row) >= self.max_new_tokens
            if elapsed >= timeout_s and not finished:
                answers.append(ModelAnswer(text.strip(), f"timeout after {timeout_s:g}s", per_item))
            else:
                answers.append(ModelAnswer(text.strip(), None, per_item))
        return answers

    def close(self) -> None:
        self.model = None
