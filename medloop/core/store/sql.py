"""The store on SQLAlchemy Core: SQLite (the embedded default, WAL) or Postgres, by URL.

Opening a store brings its schema to the current revision first (`migrate.py`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from medloop.core.store import base as b
from medloop.core.store.campaign_repos import SqlAudit, SqlCampaigns, SqlCycles, SqlListings, SqlTrials
from medloop.core.store.claim_repos import SqlClaims, SqlEvidence
from medloop.core.store.code_repos import SqlCodeModules
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
        self.campaigns: b.Campaigns = SqlCampaigns(self.db)
        self.cycles: b.Cycles = SqlCycles(self.db)
        self.trials: b.Trials = SqlTrials(self.db)
        self.listings: b.Listings = SqlListings(self.db)
        self.claims: b.Claims = SqlClaims(self.db)
        self.evidence: b.EvidenceLinks = SqlEvidence(self.db)
        self.graph: b.Graph = SqlGraph(self.db)
        self.facts: b.Facts = SqlFacts(self.db)
        self.vectors: b.Vectors = SqlVectors(self.db)
        self.meta: b.Meta = SqlMeta(self.db)
        self.quarantines: b.Quarantines = SqlQuarantines(self.db)
        self.code: b.CodeModules = SqlCodeModules(self.db)
        self.audit: b.Audit = SqlAudit(self.db)
        self.users: b.Users = SqlUsers(self.db)
        self.tokens: b.Tokens = SqlTokens(self.db)
        self.sessions: b.Sessions = SqlSessions(self.db)
        self.reviews: b.Reviews = SqlReviews(self.db)
        self.ledger: b.ToolLedger = SqlLedger(self.db)

    def transaction(self) -> AbstractContextManager[None]:
        return self.db.transaction()

    def close(self) -> None:
        self.db.close()


def open_store(target: str | Path) -> SqlStore:
    """A store from a database URL or a SQLite file path."""
    return SqlStore(store_url(target))
