"""What every request handler gets: settings, the store, and (built on first use, since
they load an embedder) the campaign runner and knowledge base, all from `bootstrap`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from medloop import bootstrap
from medloop.core.records import Quarantine
from medloop.core.settings import Settings
from medloop.core.store import Store
from medloop.engine.launcher import CampaignProcesses
from medloop.web.audit_page import IncrementalVerifier
from medloop.web.errors import Unavailable

if TYPE_CHECKING:
    from medloop.agents.runner import CampaignRunner
    from medloop.knowledge.base import KnowledgeBase


@runtime_checkable
class Curation(Protocol):
    """The quarantine part of the knowledge base's curation interface."""

    def quarantine(self, target: str, *, why: str, actor: str, role: str) -> Quarantine: ...

    def unquarantine(self, quarantine_id: str, *, actor: str, role: str, reason: str) -> Quarantine: ...


@dataclass(frozen=True)
class RateLimit:
    """Review actions per user: at most `count` in any `window_s` seconds."""

    count: int = 30
    window_s: float = 60.0


@dataclass
class WebContext:
    settings: Settings
    store: Store
    launcher: CampaignProcesses
    examples_dir: Path | None = None
    review_limit: RateLimit = RateLimit()
    # client address -> until when this process looks its failed logins up (guard.py)
    suspects: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _runner: Any = None
    audit_chain: IncrementalVerifier = field(default_factory=IncrementalVerifier)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        examples_dir: Path | None = None,
        review_limit: RateLimit | None = None,
        cwd: Path | None = None,
    ) -> WebContext:
        return cls(
            settings=settings,
            store=bootstrap.store(settings),
            launcher=bootstrap.campaign_processes(settings, cwd=cwd),
            examples_dir=examples_dir,
            review_limit=review_limit or RateLimit(),
        )

    def runner(self) -> CampaignRunner:
        """The campaign runner (creates campaigns, pauses, stops), sharing this store."""
        with self._lock:
            if self._runner is None:
                from medloop.agents.runner import CampaignRunner

                services = bootstrap.campaign_services(self.settings, store_=self.store)
                self._runner = CampaignRunner(services)
            runner: CampaignRunner = self._runner
            return runner

    def knowledge(self) -> KnowledgeBase:
        return self.runner().s.knowledge

    def curation(self) -> Curation:
        kb = self.knowledge()
        if not isinstance(kb, Curation):
            raise Unavailable(
                "this knowledge base does not support quarantine", hint="upgrade medloop's knowledge package"
            )
        return kb
