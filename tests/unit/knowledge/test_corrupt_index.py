"""A corrupt chroma.sqlite3 (not a database): opening says one clear line, `knowledge
status` and `campaign run` print it without a traceback, and `knowledge rebuild` moves the
damaged index aside (kept, timestamped) and rebuilds it from SQL. (Issue 14 item 11.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medloop.core.settings import Settings
from medloop.core.store import open_store
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.factory import make_knowledge_base
from medloop.knowledge.vector import ChromaVectorIndex, CorruptIndex
from tests.unit.knowledge.builders import make_claim
from tests.web.builders import replay_table, replay_yaml

LINE = "vector index is corrupt: run `medloop knowledge rebuild`"


def _with_claims(settings: Settings) -> None:
    kb = make_knowledge_base(settings, open_store(settings.db_path))
    assert isinstance(kb.vectors, ChromaVectorIndex)
    kb.add_claims([(make_claim("clm_loss", statement="Dice-CE loss raises Dice"), [])], actor="agent")
    kb.close()


def _corrupt(settings: Settings) -> None:
    (settings.chroma_dir / "chroma.sqlite3").write_bytes(os.urandom(8192))


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "MEDLOOP_WORKSPACE": str(settings.workspace_dir),
        "MEDLOOP_EMBEDDER": settings.embedder,
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args],
        capture_output=True,
        text=True,
        env=_env(settings),
        timeout=300,
    )


def test_a_corrupt_index_is_one_clear_error_and_rebuild_recovers_it(settings: Settings) -> None:
    _with_claims(settings)
    _corrupt(settings)
    store = open_store(settings.db_path)
    with pytest.raises(CorruptIndex, match="vector index is corrupt"):
        make_knowledge_base(settings, store)
    kb = make_knowledge_base(settings, store, reconcile=False, repair=True)
    assert kb.set_aside is not None and kb.set_aside.name.startswith("chroma.corrupt-")
    assert (kb.set_aside / "chroma.sqlite3").is_file()  # kept for inspection
    assert kb.rebuild()["vectors"] == 1
    assert kb.retrieve(RetrievalQuery(text="which loss raises Dice", k=1))[0].claim.id == "clm_loss"
    kb.close()


def test_cli_status_and_run_say_one_line_and_rebuild_repairs(settings: Settings, tmp_path: Path) -> None:
    # In another process: the writer lock of this one would send the CLI to a memory index.
    code = (
        "from medloop.core.settings import Settings\n"
        "from tests.unit.knowledge.test_corrupt_index import _with_claims\n"
        "_with_claims(Settings())\n"
    )
    made = subprocess.run(
        [sys.executable, "-c", code], env=_env(settings), capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    _corrupt(settings)
    status = _cli(settings, "knowledge", "status")
    assert status.returncode != 0 and LINE in status.stderr and "Traceback" not in status.stderr
    campaign = tmp_path / "c.yaml"
    campaign.write_text(replay_yaml(replay_table(tmp_path / "replay" / "table.json"), max_cycles=1))
    run = _cli(settings, "campaign", "run", str(campaign))
    assert run.returncode != 0 and LINE in run.stderr and "Traceback" not in run.stderr
    rebuilt = _cli(settings, "knowledge", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "moved it to" in rebuilt.stderr and "Traceback" not in rebuilt.stderr
    assert "vectors 1" in " ".join(rebuilt.stdout.split())
    assert len(list(settings.workspace_dir.glob("chroma.corrupt-*"))) == 1
    again = _cli(settings, "knowledge", "status")
    assert again.returncode == 0, again.stderr
