"""Knowledge in server mode: MEDLOOP_CHROMA_URL points every process at one real Chroma
server (`chroma run`), as a lab runs it. Vectors live on the server, so a second process
(another researcher's CLI) sees them without the writer lock, and rebuild works there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.factory import make_knowledge_base
from medloop.knowledge.lock import release
from medloop.knowledge.vector import ChromaVectorIndex
from tests.unit.knowledge.builders import make_claim


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_claims_reach_a_chroma_server_and_other_processes_read_them(
    settings: Settings, chroma_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLOOP_CHROMA_URL", chroma_url)
    settings = Settings()
    assert settings.vector_target == chroma_url
    store = open_store(settings.store_url)
    kb = make_knowledge_base(settings, store)
    assert isinstance(kb.vectors, ChromaVectorIndex)
    kb.add_claims(
        [(make_claim(f"clm_{i}", to=f"loss{i}", statement=f"loss {i} raises Dice"), []) for i in range(5)],
        actor="agent",
    )
    assert len(kb.vectors.ids()) == 5
    # No local Chroma folder: the vectors are on the server.
    assert not settings.chroma_dir.exists()
    env = dict(os.environ)
    status = _cli("knowledge", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["vector_index"] == "ChromaVectorIndex" and data["vectors"] == 5
    # Rebuild (the documented recovery; it needs the writer lock) runs against the server too.
    kb.close()
    lock = settings.workspace_dir / "knowledge" / "writer.lock"
    release(lock)
    rebuilt = _cli("knowledge", "rebuild", "--json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    kb = make_knowledge_base(settings, store)
    hits = kb.retrieve(RetrievalQuery(text="loss 3 raises Dice", k=5))
    assert {h.claim.id for h in hits} == {f"clm_{i}" for i in range(5)}
    kb.close()


def test_two_workspaces_on_one_server_keep_their_collections_apart(
    tmp_path: object, chroma_url: str, monkeypatch: pytest.MonkeyPatch, workspace: object
) -> None:
    monkeypatch.setenv("MEDLOOP_CHROMA_URL", chroma_url)
    counts = []
    for name, n in (("a", 2), ("b", 3)):
        monkeypatch.setenv("MEDLOOP_WORKSPACE", str(workspace) + name)  # type: ignore[operator]
        s = Settings()
        kb = make_knowledge_base(s, open_store(s.store_url))
        kb.add_claims([(make_claim(f"clm_{name}{i}"), []) for i in range(n)], actor="agent")
        counts.append(len(kb.vectors.ids()))
        kb.close()
    assert counts == [2, 3]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://chroma:8000", "MEDLOOP_CHROMA_URL='ftp://chroma:8000' is not an http(s):// URL"),
        ("http://127.0.0.1:9", "cannot reach the Chroma server at http://127.0.0.1:9"),
    ],
)
def test_a_bad_chroma_url_is_one_clear_line(workspace: object, url: str, message: str) -> None:
    env = dict(os.environ, MEDLOOP_CHROMA_URL=url)
    out = _cli("knowledge", "status", env=env)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
