"""Extension points of the trainers for code hypotheses (the contract is core/code.py).

Inside the sandbox only: the job loads a staged module, checks that its source still
hashes to the name the spec gave it and that it implements the point's function, and
hands the function to the trainer. `library/` holds the code moves shipped with medloop,
which the offline planner proposes; they travel the same path as any other module.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medloop.core.code import INTERFACES, source_sha256

CODE_DIR = "code"  # staged modules: /in/code/<sha256>.py


class ExtensionError(RuntimeError):
    """A staged module is missing, altered, or does not implement its extension point."""


def load_extension(in_dir: Path, point: str, sha256: str) -> Callable[..., Any]:
    """The function a staged module implements for `point`."""
    name, params = INTERFACES[point]
    path = in_dir / CODE_DIR / f"{sha256}.py"
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExtensionError(f"code module {sha256[:12]} ({point}) is not staged: {exc}") from None
    if source_sha256(source) != sha256:
        raise ExtensionError(f"code module {sha256[:12]} ({point}): its source does not match its hash")
    spec = importlib.util.spec_from_file_location(f"medloop_code_{point}_{sha256[:12]}", path)
    if spec is None or spec.loader is None:
        raise ExtensionError(f"code module {sha256[:12]} ({point}) cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = getattr(module, "EXTENSION_POINT", None)
    if declared != point:
        raise ExtensionError(
            f"code module {sha256[:12]} declares EXTENSION_POINT={declared!r}, not {point!r}"
        )
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ExtensionError(f"code module {sha256[:12]} ({point}) defines no function {name}()")
    got = tuple(inspect.signature(fn).parameters)[: len(params)]
    if got != params:
        raise ExtensionError(f"code module {sha256[:12]}: {name}{got} must take parameters {params}")
    wrapped: Callable[..., Any] = fn
    return wrapped


def extensions_for(config: Any, in_dir: Path) -> dict[str, Callable[..., Any]]:
    """Every extension a trial config names (point -> function); {} for plain configs."""
    refs: dict[str, str] = config.code_refs() if hasattr(config, "code_refs") else {}
    return {point: load_extension(in_dir, point, sha) for point, sha in sorted(refs.items())}


# The extensions of the trial this job process runs (one trial per process): set once by
# the job entry of a task family, read by the trainer at each extension point.
_ACTIVE: dict[str, Callable[..., Any]] = {}


def activate(extensions: dict[str, Callable[..., Any]]) -> None:
    _ACTIVE.clear()
    _ACTIVE.update(extensions)


def active(point: str) -> Callable[..., Any] | None:
    """The function a code hypothesis supplies at `point`, or None (built-in behaviour)."""
    return _ACTIVE.get(point)
