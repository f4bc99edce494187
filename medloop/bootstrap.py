"""The one place that turns settings into concrete backends (filled in by the skeleton)."""

from __future__ import annotations

from medloop.core.settings import Settings

__all__ = ["Settings"]
