"""Which option did a free-text answer choose? Exact option letter first, then option text;
what neither settles goes to an optional LLM judge (medloop.engine.vqa_api.LLMJudge).

Letter rules, in order: the whole answer is a letter ("B", "(B)", "B.", "**B**"); it starts
with a letter and punctuation ("B. liver", "(C) left"); an explicit phrase ("the answer is
C", "Option: D"); exactly one distinct option letter stands alone in the text ("A" as the
English article and "I" as the pronoun do not count). Text rule: exactly one option's text
occurs as whole words (an option contained in another matched option, such as "kidney" in
"left kidney", yields to the longer one).
"""

from __future__ import annotations

import re
from typing import Literal

Method = Literal["letter", "text", "judge", "none", "missing", "error"]

_WHOLE = re.compile(r"^[\s*_`'\"(\[{]*([A-J])[\s*_`'\")\]}.:]*$")
_LEADING = re.compile(r"^[\s*_`'\"]*[(\[]?([A-J])(?:[)\].:]|\s*[-–]\s)")
_PHRASE = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|would be|:)?\s*[:\s]*[*_`'\"]*[(\[]?([A-J])[)\]]?(?![A-Za-z])",
    re.IGNORECASE,
)
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])([A-J])(?![A-Za-z0-9'])")


def extract_letter(response: str, letters: list[str]) -> str | None:
    text = response.strip()
    if not text:
        return None
    for pattern in (_WHOLE, _LEADING):
        match = pattern.match(text)
        if match and match.group(1) in letters:
            return match.group(1)
    phrase = [m.group(1).upper() for m in _PHRASE.finditer(text)]
    phrase = [p for p in phrase if p in letters]
    if len(set(phrase)) == 1:
        return phrase[0]
    found = set()
    for match in _STANDALONE.finditer(text):
        letter = match.group(1)
        rest = text[match.end() :]
        if letter in ("A", "I") and re.match(r"\s+[a-z]", rest):
            continue  # the article "A ..." / the pronoun "I ..."
        if letter in letters:
            found.add(letter)
    return found.pop() if len(found) == 1 else None


def _norm(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()).strip() + " "


def extract_text(response: str, options: dict[str, str]) -> str | None:
    said = _norm(response)
    hits = {
        letter: _norm(text) for letter, text in options.items() if _norm(text).strip() and _norm(text) in said
    }
    # an option inside a longer matched option ("kidney" in "left kidney") yields to it
    kept = [letter for letter, t in hits.items() if not any(t != o and t in o for o in hits.values())]
    return kept[0] if len(kept) == 1 else None


def extract_choice(response: str, options: dict[str, str]) -> tuple[str | None, Method]:
    """(letter or None, how it was found) without a judge."""
    letter = extract_letter(response, list(options))
    if letter is not None:
        return letter, "letter"
    letter = extract_text(response, options)
    if letter is not None:
        return letter, "text"
    return None, "none"
