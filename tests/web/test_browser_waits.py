"""The dashboard's Content Security Policy (script-src 'self') forbids eval in the page.
Playwright's wait_for_function evaluates a *string expression* again with eval on every
poll after the first, so a wait whose condition is not already true on the first poll
fails with "EvalError ... unsafe-eval" (CI, stop 25: the slice viewer drew one frame
late). A function expression is evaluated once, through DevTools, and then only called.
Every wait in the browser tests is therefore written as a function."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def string_expression_waits(source: str, name: str) -> list[str]:
    """Calls to ``*.wait_for_function`` whose first argument is a string that is not a
    function expression, as ``name:line``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "wait_for_function" or not node.args:
            continue
        text = _text(node.args[0])
        if text is None:
            continue
        head = text.lstrip()
        if not (head.startswith("() =>") or head.startswith("function") or head.startswith("async")):
            found.append(f"{name}:{node.lineno}")
    return found


def test_the_check_finds_a_string_expression_wait() -> None:
    bad = "page.wait_for_function(\"document.getElementById('v').dataset.drawn !== undefined\")\n"
    good = "page.wait_for_function(\"() => document.getElementById('v').dataset.drawn !== undefined\")\n"
    assert string_expression_waits(bad, "x.py") == ["x.py:1"]
    assert string_expression_waits(good, "x.py") == []


def test_every_browser_wait_is_a_function_expression() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        offenders += string_expression_waits(path.read_text(), str(path.relative_to(TESTS)))
    assert offenders == [], f"wait_for_function with a string expression (eval under the CSP): {offenders}"
