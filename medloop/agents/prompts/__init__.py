"""Prompts are data: Markdown templates loaded by name; logs pass through `truncate`."""

from __future__ import annotations

from importlib.resources import files


def load_prompt(name: str) -> str:
    return (files("medloop.agents.prompts") / f"{name}.md").read_text()


def truncate(text: str, max_chars: int) -> str:
    """The one truncation helper for anything that goes into a prompt."""
    if len(text) <= max_chars:
        return text
    keep = max_chars - 30
    return text[: keep // 2] + f"\n[... {len(text) - keep} chars cut ...]\n" + text[-keep // 2 :]


def quote(text: str) -> str:
    """Quote untrusted text (claim statements) so it reads as data, never as instructions."""
    # splitlines() also breaks on \r, \x0b, \x1c-\x1e, \x85, \u2028, \u2029: every line
    # of untrusted text is quoted, whatever separator it uses.
    return "\n".join("> " + line for line in (text.splitlines() or [""]))
