"""The registry with every medloop tool in it (importing a tool module registers it)."""

from __future__ import annotations

import importlib

from medloop.tools.registry import REGISTRY, Registry

# Registration order is the order tools are listed in (schemas, MCP, docs).
TOOL_MODULES = (
    "medloop.tools.datasets",
    "medloop.tools.trial_tools",
    "medloop.tools.evaluate",
    "medloop.tools.knowledge_tools",
    "medloop.tools.campaigns",
)


def default_registry() -> Registry:
    """All tools, in the order of TOOL_MODULES (whoever imported a module first)."""
    for module in TOOL_MODULES:
        importlib.import_module(module)
    ordered = Registry()
    for module in TOOL_MODULES:
        for spec in REGISTRY:
            if spec.fn.__module__ == module:
                ordered.add(spec)
    return ordered
