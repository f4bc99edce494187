"""Helpers for VQA tests: solid-colour PNG images and hand-written TSV rows."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230), "yellow": (240, 230, 30)}
HEADER = ["index", "image", "question", "A", "B", "C", "D", "answer", "category", "modality", "department"]


def png_b64(colour: str, size: int = 16) -> str:
    from PIL import Image

    rgb = np.zeros((size, size, 3), dtype=np.uint8)
    rgb[:] = COLOURS[colour]
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def dominant_colour(b64: str) -> str:
    """The name of the COLOURS entry closest to the image's mean colour."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=float)
    mean = rgb.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda c: float(np.sum((np.array(COLOURS[c]) - mean) ** 2)))


def write_rows(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def colour_row(
    index: str,
    colour: str,
    answer_colour: str,
    *,
    category: str = "colour",
    options: tuple[str, ...] = ("red", "green", "blue", "yellow"),
) -> list[str]:
    """A 'what colour is this image' item; the answer letter is the option of answer_colour."""
    letters = "ABCD"
    cells = list(options) + [""] * (4 - len(options))
    answer = letters[options.index(answer_colour)] if answer_colour in options else answer_colour
    return [
        index,
        png_b64(colour),
        "What colour fills this image?",
        *cells,
        answer,
        category,
        "photo",
        "optics",
    ]
