"""The factory (settings -> backends), the real MiniLM + Chroma path, and `medloop claims`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medloop.core.records import JobResult, Provenance, TrialResult
from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.factory import make_knowledge_base
from medloop.knowledge.vector import ChromaVectorIndex, EmbedderMismatch, MemoryVectorIndex
from tests.unit.knowledge.builders import add_campaign, add_trial, make_claim, trial_evidence


def test_real_minilm_and_chroma_end_to_end(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "embedder", "minilm")
    store = open_store(settings.db_path)
    kb = make_knowledge_base(settings, store)
    assert isinstance(kb.vectors, ChromaVectorIndex) and kb.owner
    kb.add_claims(
        [
            (
                make_claim("clm_loss", statement="Dice-CE loss raises the Dice score of liver segmentation"),
                [],
            ),
            (
                make_claim(
                    "clm_aug",
                    factor="augmentation",
                    frm="none",
                    to="light",
                    statement="Light data augmentation helps segmentation at unseen hospitals",
                ),
                [],
            ),
            (
                make_claim(
                    "clm_lr",
                    factor="lr",
                    frm=0.001,
                    to=0.1,
                    statement="A learning rate of 0.1 makes training diverge",
                ),
                [],
            ),
        ],
        actor="agent",
    )
    top = kb.retrieve(RetrievalQuery(text="which loss function improves Dice for organ segmentation?", k=3))
    assert top[0].claim.id == "clm_loss"
    top = kb.retrieve(RetrievalQuery(text="augmenting images for robustness to new sites", k=3))
    assert top[0].claim.id == "clm_aug"
    # The MiniLM vector is semantic: paraphrases are closer than unrelated sentences.
    v = kb.embedder.embed(["the loss diverged", "training blew up", "the spleen is small"])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    kb.close()
    # Reopening with another embedder is a clear error naming both.
    monkeypatch.setattr(settings, "embedder", "hash")
    with pytest.raises(EmbedderMismatch, match=r"'minilm' \(dim 384\).*'hash' \(dim 64\)"):
        make_knowledge_base(settings, store)


def test_second_process_is_a_reader_and_sees_new_claims(settings: Settings) -> None:
    store = open_store(settings.db_path)
    kb = make_knowledge_base(settings, store)  # this process holds the writer lock
    code = (
        "import time, json\n"
        "from medloop.core.settings import Settings\n"
        "from medloop.core.store import open_store\n"
        "from medloop.knowledge.factory import make_knowledge_base\n"
        "from medloop.knowledge.base import RetrievalQuery\n"
        "s = Settings(); kb = make_knowledge_base(s, open_store(s.db_path))\n"
        "print(json.dumps({'owner': kb.owner, 'index': type(kb.vectors).__name__}), flush=True)\n"
        "start = time.time()\n"
        "while time.time() - start < 10:\n"
        "    ids = [r.claim.id for r in kb.retrieve(RetrievalQuery(text='dicece loss', k=5))]\n"
        "    if 'clm_late' in ids:\n"
        "        print(json.dumps({'seen_after_s': time.time() - start}), flush=True); break\n"
        "    time.sleep(0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first == {"owner": False, "index": "MemoryVectorIndex"}
    kb.add_claim(make_claim("clm_late"), [], actor="agent")
    second = json.loads(proc.stdout.readline())
    proc.wait(timeout=20)
    assert second["seen_after_s"] < 2.0


def test_memory_index_by_setting(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "vector_index", "memory")
    kb = make_knowledge_base(settings, open_store(settings.db_path))
    assert isinstance(kb.vectors, MemoryVectorIndex)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args], capture_output=True, text=True, timeout=60
    )


def test_claims_list_and_show_resolve_evidence_to_trials(settings: Settings) -> None:
    store = open_store(settings.db_path)
    add_campaign(store, "cmp_a", "alice")
    trial = add_trial(store, "trl_1", "cmp_a", seed=3)
    prov = Provenance(
        code_version="0.1.0",
        code_commit="abc123",
        spec_hash=trial.spec_hash,
        dataset_checksum="c" * 64,
        seed=3,
        runtime="local",
        image="python3.11+lock:ff",
        host="h",
        started_at="t0",
        ended_at="t1",
        exit_code=0,
    )
    job = JobResult(
        key="k", status="succeeded", exit_code=0, wall_s=1.0, out_dir=Path("/tmp/x"), provenance=prov
    )
    store.trials.set_result(
        "trl_1", TrialResult(trial_id="trl_1", spec_hash=trial.spec_hash, status="succeeded", job=job)
    )
    kb = make_knowledge_base(settings, store)
    kb.add_claim(make_claim("clm_1", campaign="cmp_a"), trial_evidence("clm_1", "trl_1"), actor="agent")
    kb.add_claim(make_claim("clm_2", to="dicefocal"), [], actor="agent")
    out = _run_cli("claims", "list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    claim = next(c for c in data["claims"] if c["id"] == "clm_1")
    ev = claim["evidence"][0]
    assert ev["trial"]["spec"]["seed"] == 3
    assert ev["provenance"]["seed"] == 3
    assert ev["provenance"]["dataset_checksum"] == "c" * 64
    assert ev["provenance"]["code_version"] == "0.1.0" and ev["provenance"]["spec_hash"] == trial.spec_hash
    tiered = json.loads(_run_cli("claims", "list", "--tier", "refuted", "--json").stdout)
    assert tiered["claims"] == []
    shown = _run_cli("claims", "show", "clm_1", "--json")
    assert json.loads(shown.stdout)["history"][0]["action"] == "claim.add"
    human = _run_cli("claims", "list")
    assert "clm_1" in human.stdout and "supported" in human.stdout


def test_claims_cli_user_errors_are_one_line(settings: Settings) -> None:
    open_store(settings.db_path).close()
    bad = _run_cli("claims", "list", "--tier", "gold")
    assert bad.returncode == 2 and "'gold' is not a tier" in bad.stderr and "Traceback" not in bad.stderr
    missing = _run_cli("claims", "show", "clm_nope")
    assert missing.returncode == 3 and "clm_nope not found" in missing.stderr
