"""Web fixtures: one finished replay campaign (owner alice) built once per session with
the real runner and knowledge base, copied into a fresh workspace for every test."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from medloop import bootstrap
from medloop.core.settings import Settings
from medloop.core.store import SqlStore
from medloop.web.app import create_app
from medloop.web.context import RateLimit
from tests.web import builders as B


def ws_settings(workspace: Path) -> Settings:
    return Settings(workspace=workspace, embedder="hash", vector_index="memory", user="tester")


@dataclass
class Template:
    root: Path
    campaign_id: str
    tokens: dict[str, str]
    table: Path


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("web-template")
    table = B.replay_table(root / "data" / "table.json")
    settings = ws_settings(root / "ws")
    campaign_id = B.run_campaign(settings, B.replay_spec(table), owner="alice")
    tokens = B.add_users(settings)
    return Template(root=root, campaign_id=campaign_id, tokens=tokens, table=table)


@dataclass
class Web:
    settings: Settings
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]
    campaign_id: str
    table: Path
    store: SqlStore

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def claims(self, tier: str) -> list[str]:
        return [c.id for c in self.store.claims.list(tiers=[tier], campaign_id=self.campaign_id)]

    def login(self, user: str) -> tuple[TestClient, str]:
        """A browser-like client with a dashboard session; returns it and the CSRF token."""
        client = TestClient(self.app)
        nonce = re.search(r'name="nonce" value="([^"]+)"', client.get("/login").text)
        assert nonce is not None
        r = client.post("/login", data={"nonce": nonce.group(1), "token": self.tokens[user], "next": "/"})
        assert r.status_code == 200, r.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', r.text)
        assert csrf is not None
        return client, csrf.group(1)


def make_web(template: Template, dest: Path, *, review_limit: RateLimit | None = None) -> Web:
    shutil.copytree(template.root / "ws", dest / "ws")
    settings = ws_settings(dest / "ws")
    examples = dest / "examples"
    examples.mkdir()
    (examples / "replay.yaml").write_text(B.replay_yaml(template.table, name="replay example", max_cycles=1))
    app = create_app(
        settings, examples_dir=examples, review_limit=review_limit or RateLimit(count=1000, window_s=60)
    )
    return Web(
        settings=settings,
        app=app,
        client=TestClient(app),
        tokens=template.tokens,
        campaign_id=template.campaign_id,
        table=template.table,
        store=bootstrap.store(settings),
    )


@pytest.fixture
def web(template: Template, tmp_path: Path) -> Iterator[Web]:
    w = make_web(template, tmp_path)
    yield w
    w.client.close()
