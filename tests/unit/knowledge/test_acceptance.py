"""Issue 5 acceptance on the real backends: SQL-first crash safety and rebuilds that give
the same answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.factory import make_knowledge_base

KILLER = """
import os, signal, sys
from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge import vector
from medloop.knowledge.factory import make_knowledge_base
from tests.unit.knowledge.builders import make_claim

s = Settings()
kb = make_knowledge_base(s, open_store(s.db_path))
kb.add_claims([(make_claim(f"clm_ok{i}", to=f"v{i}"), []) for i in range(5)], actor="agent")
kb.close()
real = vector.ChromaVectorIndex.upsert
def die(self, ids, vectors, metadatas):
    os.kill(os.getpid(), signal.SIGKILL)  # after the SQL commit, before the index write
vector.ChromaVectorIndex.upsert = die
kb.add_claims([(make_claim(f"clm_lost{i}", to=f"w{i}"), []) for i in range(3)], actor="agent")
"""

PROBES = """
import json, sys
from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.factory import make_knowledge_base

s = Settings()
kb = make_knowledge_base(s, open_store(s.db_path))
words = ["loss", "augmentation", "learning rate", "batch size", "depth", "dice", "liver", "kidney", "site", "noise"]
out = []
for i in range(100):
    text = f"does {words[i % 10]} with {words[(i * 3 + 1) % 10]} help {words[(i * 7 + 2) % 10]} segmentation {i}"
    purpose = "planning" if i % 2 else "browse"
    res = kb.retrieve(RetrievalQuery(text=text, k=10, purpose=purpose, factors=[] if i % 3 else ["loss", "lr"]))
    out.append([[r.claim.id, round(r.score, 5)] for r in res])
json.dump({"top10": out, "vectors": len(kb.vectors.ids()), "claims": len(kb.store.claims.tiers())}, sys.stdout)
"""

SEED = """
import random
from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.factory import make_knowledge_base
from tests.unit.knowledge.builders import make_claim

s = Settings()
kb = make_knowledge_base(s, open_store(s.db_path))
rng = random.Random(5)
organs = ["liver", "kidney", "spleen", "pancreas", "aorta"]
factors = [("loss", "dice", "dicece"), ("augmentation", "none", "light"), ("lr", 0.001, 0.01), ("batch_size", 4, 8), ("depth", 4, 5)]
batch = []
for i in range(400):
    f, a, b = factors[i % 5]
    organ = organs[rng.randrange(5)]
    est = rng.choice([0.03, -0.02, 0.001])
    stmt = f"Changing {f} from {a} to {b} changed {organ} dice by {est:+.3f} on site {i % 7}"
    tier = rng.choice(["supported", "refuted", "inconclusive", "external"])
    batch.append((make_claim(f"clm_{i:04d}", factor=f, frm=a, to=b, estimate=est, p=0.01 if est != 0.001 else 0.5,
                             statement=stmt, tier=tier, dataset=f"D{i % 4}", checksum=str(i % 4) * 64), []))
kb.add_claims(batch, actor="agent")
for i in range(0, 400, 9):
    kb.store.claims.set_tier(f"clm_{i:04d}", "reproduced")
kb.close()
"""


def _py(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=Path.cwd()
    )


def _env(workspace: Path, embedder: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEDLOOP_WORKSPACE": str(workspace),
        "MEDLOOP_EMBEDDER": embedder,
        "PYTHONPATH": str(Path.cwd()),
    }


def test_kill_between_sql_commit_and_index_then_restart(workspace: Path) -> None:
    proc = _py(KILLER, _env(workspace, "hash"))
    assert proc.returncode == -9, proc.stderr  # really killed mid-write
    s = Settings()
    store = open_store(s.db_path)
    sql_ids = set(store.claims.tiers())
    assert {f"clm_lost{i}" for i in range(3)} <= sql_ids  # committed before the kill
    kb = make_knowledge_base(s, store)  # reconcile on start
    assert kb.vectors.ids() == sql_ids
    assert kb.graph.nodes("claim") == sql_ids
    assert store.audit.verify() == (True, None)


@pytest.mark.slow
def test_rebuild_from_sql_gives_identical_top10s(workspace: Path) -> None:
    env = _env(workspace, "minilm")
    seeded = _py(SEED, env)
    assert seeded.returncode == 0, seeded.stderr
    before = _py(PROBES, env)
    assert before.returncode == 0, before.stderr
    shutil.rmtree(workspace / "chroma")
    (workspace / "knowledge" / "graph.json").unlink()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "medloop", "knowledge", "rebuild", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = _py(PROBES, env)
    assert after.returncode == 0, after.stderr
    a, b = json.loads(before.stdout), json.loads(after.stdout)
    assert a["vectors"] == b["vectors"] == a["claims"] == 400
    assert all(len(t) == 10 for t in a["top10"])
    assert [[cid for cid, _ in t] for t in a["top10"]] == [[cid for cid, _ in t] for t in b["top10"]]
