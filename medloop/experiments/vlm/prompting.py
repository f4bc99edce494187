"""How a multiple-choice item is put to a model: one text prompt (hint, question, lettered
options, an instruction to answer with the letter) and the image, either as an OpenAI-style
chat message with a base64 data URL or as a PIL image for a local processor."""

from __future__ import annotations

from typing import Any

from medloop.experiments.vlm.tsv import VqaItem, decode_image

INSTRUCTION = "Answer with the option's letter from the given choices directly."


def prompt_text(item: VqaItem) -> str:
    lines = []
    if item.hint:
        lines.append(f"Hint: {item.hint}")
    lines.append(f"Question: {item.question}")
    lines.append("Options:")
    lines += [f"{letter}. {text}" for letter, text in item.options.items()]
    lines.append(INSTRUCTION)
    return "\n".join(lines)


def chat_messages(item: VqaItem) -> list[dict[str, Any]]:
    """OpenAI chat format: one user turn with the image as a data URL part, then the text."""
    data, mime = decode_image(item.image)
    del data  # decoded only to check the image and learn its type
    url = f"data:{mime};base64,{item.image.strip()}"
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": prompt_text(item)},
            ],
        }
    ]


def load_image(item: VqaItem, size: int | None = None) -> Any:
    """The item's image as an RGB PIL image, resized to size x size when given."""
    import io

    from PIL import Image

    data, _ = decode_image(item.image)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image
