"""Answer letters balanced per split: with n options, each letter is the answer of
1/n of the items (within one item), so a model that always answers "B" scores chance.

Positions come from a seeded permutation of a balanced sequence (0, 1, .., n-1, 0, 1, ..)
per option count; the correct option moves to its position and the wrong options keep
their (already shuffled) relative order around it."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace

import numpy as np

from medloop.experiments.vlm.tsv import VqaItem


def balance_letters(items: list[VqaItem], *, seed: int, split: str) -> list[VqaItem]:
    """The same items with the answer's position assigned by a balanced permutation."""
    by_n: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item.answer is not None and item.answer in item.options and len(item.options) > 1:
            by_n[len(item.options)].append(i)
    out = list(items)
    salt = int(hashlib.sha256(split.encode()).hexdigest()[:8], 16)
    for n, members in sorted(by_n.items()):
        rng = np.random.default_rng([seed, salt, n])
        positions = rng.permutation(np.resize(np.arange(n), len(members)))
        for i, pos in zip(members, positions.tolist(), strict=True):
            out[i] = _answer_at(items[i], int(pos))
    return out


def _answer_at(item: VqaItem, pos: int) -> VqaItem:
    assert item.answer is not None
    letters = list(item.options)
    correct = item.options[item.answer]
    wrong = [text for letter, text in item.options.items() if letter != item.answer]
    texts = [*wrong[:pos], correct, *wrong[pos:]]
    return replace(item, options=dict(zip(letters, texts, strict=True)), answer=letters[pos])
