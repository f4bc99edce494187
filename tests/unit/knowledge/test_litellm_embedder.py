"""`litellm:<model>` embedders through litellm against a local OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from medloop.core.errors import LLMError
from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.factory import make_knowledge_base
from medloop.knowledge.vector import EmbedderMismatch
from tests.unit.knowledge.builders import make_claim

DIM = 12


def fake_vector(text: str) -> list[float]:
    # Words hashed into 12 buckets: texts sharing words are close, like a real model.
    v = np.zeros(DIM)
    for word in text.lower().split():
        v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return (v * 3.0).tolist()  # not normalised: the embedder must normalise


class Handler(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "model exploded"}}')
            return
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t)} for i, t in enumerate(texts)]
        payload = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_litellm_embedder_by_setting(workspace: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLOOP_EMBEDDER", "litellm:openai/fake-embed")
    monkeypatch.setenv("MEDLOOP_EMBEDDER_API_BASE", server)
    monkeypatch.setenv("MEDLOOP_EMBEDDER_API_KEY", "sk-test")
    monkeypatch.setenv("MEDLOOP_VECTOR_INDEX", "memory")
    settings = Settings()
    store = open_store(settings.db_path)
    kb = make_knowledge_base(settings, store)
    assert (kb.embedder.name, kb.embedder.dim) == ("litellm:openai/fake-embed", DIM)
    kb.add_claim(make_claim("clm_a", statement="dicece loss raises liver dice"), [], actor="agent")
    kb.add_claim(
        make_claim("clm_b", to="dicefocal", statement="spleen augmentation sites"), [], actor="agent"
    )
    top = kb.retrieve(RetrievalQuery(text="liver dice with dicece loss", k=2))
    assert top[0].claim.id == "clm_a"
    assert any(c["path"].endswith("/embeddings") and c["auth"] == "Bearer sk-test" for c in Handler.calls)
    rows = store.vectors.get(["clm_a"])
    assert np.isclose(np.linalg.norm(np.frombuffer(rows["clm_a"].vector, dtype=np.float32)), 1.0)
    kb.close()
    monkeypatch.setenv("MEDLOOP_EMBEDDER", "hash")
    with pytest.raises(EmbedderMismatch, match="litellm:openai/fake-embed"):
        make_knowledge_base(Settings(), store)


def test_litellm_failure_is_one_clear_error(server: str) -> None:
    from medloop.knowledge.embedders import LiteLLMEmbedder

    emb = LiteLLMEmbedder("openai/broken", api_base=server, api_key="k")
    with pytest.raises(LLMError, match="embedding model 'openai/broken' failed"):
        emb.embed(["x"])
