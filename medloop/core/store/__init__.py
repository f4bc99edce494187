"""The SQL store: the single source of truth for campaigns, trials, claims and audit."""

from medloop.core.store.base import Page, RelatedRow, Store, VectorRow
from medloop.core.store.sql import SqlStore, open_store

__all__ = ["Page", "RelatedRow", "SqlStore", "Store", "VectorRow", "open_store"]
