"""The store on SQLAlchemy Core: SQLite (the embedded default, WAL) or Postgres, by URL.

Opening a store brings its schema to the current revision first (`migrate.py`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from medloop.core.store.campaign_repos import SqlAudit, SqlCampaigns, SqlCycles, SqlListings, SqlTrials
from medloop.core.store.claim_repos import SqlClaims, SqlEvidence
from medloop.core.store.db import Database, store_url
from medloop.core.store.knowledge_repos import SqlFacts, SqlGraph, SqlMeta, SqlQuarantines, SqlVectors
from medloop.core.store.migrate import upgrade
from medloop.core.store.web_repos import SqlLedger, SqlReviews, SqlSessions, SqlTokens, SqlUsers


class SqlStore:
    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.db = Database(url, busy_timeout_ms=busy_timeout_ms)
        try:
            upgrade(self.db)
        except BaseException:
            self.db.close()
            raise
        self.url, self.dialect = self.db.url, self.db.dialect
        self.campaigns = SqlCampaigns(self.db)
        self.cycles = SqlCycles(self.db)
        self.trials = SqlTrials(self.db)
        self.listings = SqlListings(self.db)
        self.claims = SqlClaims(self.db)
        self.evidence = SqlEvidence(self.db)
        self.graph = SqlGraph(self.db)
        self.facts = SqlFacts(self.db)
        self.vectors = SqlVectors(self.db)
        self.meta = SqlMeta(self.db)
        self.quarantines = SqlQuarantines(self.db)
        self.audit = SqlAudit(self.db)
        self.users = SqlUsers(self.db)
        self.tokens = SqlTokens(self.db)
        self.sessions = SqlSessions(self.db)
        self.reviews = SqlReviews(self.db)
        self.ledger = SqlLedger(self.db)

    def transaction(self) -> AbstractContextManager[None]:
        return self.db.transaction()

    def close(self) -> None:
        self.db.close()


def open_store(target: str | Path) -> SqlStore:
    """A store from a database URL or a SQLite file path."""
    return SqlStore(store_url(target))
