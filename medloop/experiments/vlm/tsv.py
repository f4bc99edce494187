"""Multiple-choice VQA items in the VLMEvalKit / GMAI-MMBench TSV layout.

One row per item: `index`, `image` (base64; or the index of another row whose image it
shares), `question`, optional `hint`, options in columns `A`, `B`, ... (empty = absent),
`answer` (an option letter; stripped from the files a job sees for held-out splits) and
category fields of the lexical tree: task, modality, department, granularity (GMAI-MMBench
spells two of them `clinical vqa task` and `perceptual granularity`). Other columns (case,
site, split) are kept as extras.

Rows whose structure is broken (wrong field count, no index, a repeated index) are dropped
and reported; rows that parse but cannot be posed or scored (no image, answer not among
the options) are kept and judged by `item_problem`, so callers decide what to do.
"""

from __future__ import annotations

import base64
import binascii
import csv
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.specs import VQA_CATEGORY_FIELDS

LETTERS = "ABCDEFGHIJ"
CATEGORY_FIELDS = VQA_CATEGORY_FIELDS
# Accepted column names per category field, lower-case, first match wins.
CATEGORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "task": ("task", "clinical vqa task", "category"),
    "modality": ("modality",),
    "department": ("department",),
    "granularity": ("granularity", "perceptual granularity"),
}
_CORE_COLUMNS = {"index", "image", "question", "hint", "answer", *LETTERS}
# A short `image` value that names another row: VLMEvalKit stores a shared image once.
_IMAGE_REF_MAX = 64
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


@dataclass(frozen=True)
class VqaItem:
    index: str
    question: str
    options: dict[str, str]  # letter -> option text, letters in order, empty options left out
    answer: str | None  # an option letter; None when the file has no answers
    image: str  # base64 of the encoded image; "" when missing
    categories: dict[str, str] = field(default_factory=dict)  # field -> value ("" when absent)
    hint: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # every other column
    row: int = 0  # line number in the file, for messages

    def category(self, name: str) -> str:
        return self.categories.get(name, "")


@dataclass(frozen=True)
class RowProblem:
    row: int
    index: str | None
    problem: str


@dataclass(frozen=True)
class VqaTable:
    path: Path
    items: list[VqaItem]
    problems: list[RowProblem]  # rows that were dropped while parsing
    has_answers: bool

    def by_index(self) -> dict[str, VqaItem]:
        return {item.index: item for item in self.items}


def image_mime(data: bytes) -> str | None:
    """The MIME type of encoded image bytes, from their signature; None if unknown."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_image(b64: str) -> tuple[bytes, str]:
    """Base64 -> (bytes, mime). Raises ValueError saying what is wrong."""
    if not b64.strip():
        raise ValueError("missing image")
    try:
        data = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image is not valid base64") from None
    mime = image_mime(data)
    if mime is None:
        raise ValueError("image bytes are not PNG, JPEG, GIF, BMP, TIFF or WebP")
    return data, mime


def item_problem(item: VqaItem, *, need_answer: bool) -> str | None:
    """Why an item cannot be posed (or, with `need_answer`, scored); None if it can."""
    if not item.question.strip():
        return "no question"
    if len(item.options) < 2:
        return f"fewer than 2 options ({', '.join(item.options) or 'none'})"
    try:
        decode_image(item.image)
    except ValueError as exc:
        return str(exc)
    if need_answer:
        if not item.answer:
            return "no answer"
        if item.answer not in item.options:
            return f"answer {item.answer!r} is not among the options {', '.join(item.options)}"
    return None


def _raise_field_limit() -> None:
    # Base64 images are far larger than csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_tsv(path: Path) -> VqaTable:
    """Parse a VQA TSV. Raises DatasetError only for a file that is unusable as a whole
    (missing, not text, no header, no index/question/image column)."""
    _raise_field_limit()
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: VQA file not found")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a valid TSV ({exc})") from None
    if not rows:
        raise DatasetError(f"{path}: empty file", hint="a VQA TSV starts with a header row")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    for required in ("index", "question", "image"):
        if required not in lower:
            raise DatasetError(
                f"{path}: no {required!r} column (header: {', '.join(header)})",
                hint="VQA TSVs need index, image, question, options A, B, ... and answer",
            )
    col = {name: i for i, name in reversed(list(enumerate(lower)))}
    letters = [c for c in LETTERS if c in header]
    letter_col = {c: header.index(c) for c in letters}
    category_col: dict[str, int] = {}
    for name, aliases in CATEGORY_COLUMNS.items():
        for alias in aliases:
            if alias in col and col[alias] not in category_col.values():
                category_col[name] = col[alias]
                break
    used = {i for i, h in enumerate(header) if h.lower() in _CORE_COLUMNS or h in letters}
    used |= set(category_col.values())
    extra_cols = [(i, header[i]) for i in range(len(header)) if i not in used]
    has_answers = "answer" in col

    raw: list[tuple[int, list[str]]] = []
    problems: list[RowProblem] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        index = row[col["index"]].strip() if len(row) > col["index"] else ""
        if len(row) != len(header):
            problems.append(
                RowProblem(lineno, index or None, f"has {len(row)} fields, the header has {len(header)}")
            )
            continue
        if not index:
            problems.append(RowProblem(lineno, None, "empty index"))
            continue
        if index in seen:
            problems.append(RowProblem(lineno, index, f"index {index} repeats an earlier row"))
            continue
        seen.add(index)
        raw.append((lineno, row))

    images = {row[col["index"]].strip(): row[col["image"]] for _, row in raw}
    items = []
    for lineno, row in raw:
        image = row[col["image"]].strip()
        if image and len(image) <= _IMAGE_REF_MAX and image in images and image != row[col["index"]].strip():
            image = images[image].strip()
        answer = row[col["answer"]].strip().upper() if has_answers else None
        items.append(
            VqaItem(
                index=row[col["index"]].strip(),
                question=row[col["question"]].strip(),
                options={c: row[letter_col[c]].strip() for c in letters if row[letter_col[c]].strip()},
                answer=answer or None,
                image=image,
                categories={name: row[i].strip() for name, i in category_col.items()},
                hint=row[col["hint"]].strip() if "hint" in col else "",
                extra={name: row[i] for i, name in extra_cols},
                row=lineno,
            )
        )
    return VqaTable(path, items, problems, has_answers)


def write_tsv(path: Path, items: Sequence[VqaItem], *, with_answers: bool = True) -> Path:
    """Write items as a TSV (temp file, then rename). Without answers for held-out splits."""
    _raise_field_limit()
    letters = [c for c in LETTERS if any(c in item.options for item in items)]
    extras = sorted({name for item in items for name in item.extra})
    with_hint = any(item.hint for item in items)
    header = ["index", "image", "question", *(["hint"] if with_hint else []), *letters]
    header += ["answer"] if with_answers else []
    header += [*CATEGORY_FIELDS, *extras]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow(header)
            for item in items:
                row = [item.index, item.image, item.question, *([item.hint] if with_hint else [])]
                row += [item.options.get(c, "") for c in letters]
                row += [item.answer or ""] if with_answers else []
                row += [item.category(name) for name in CATEGORY_FIELDS]
                row += [item.extra.get(name, "") for name in extras]
                writer.writerow(row)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def matches_categories(item: VqaItem, selector: str) -> bool:
    """`all`, or comma-separated `field=value` terms: true when any term matches."""
    if selector == "all":
        return True
    for term in selector.split(","):
        name, _, value = term.partition("=")
        if item.category(name.strip()) == value.strip():
            return True
    return False


def select(items: Iterable[VqaItem], selector: str) -> list[VqaItem]:
    return [item for item in items if matches_categories(item, selector)]
