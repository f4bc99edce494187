"""Export/import as JSON lines: provenance travels, trust never rises, bad files change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medloop.core.errors import SpecError
from medloop.core.records import Evidence
from medloop.core.store import SqlStore, open_store
from medloop.knowledge.embedders import HashEmbedder
from medloop.knowledge.graph import NetworkXGraph
from medloop.knowledge.service import KnowledgeService
from medloop.knowledge.transfer import export_claims, import_claims
from medloop.knowledge.vector import MemoryVectorIndex
from tests.unit.knowledge.builders import add_campaign, add_trial, make_claim, trial_evidence


def _other_kb(tmp_path: Path) -> KnowledgeService:
    store = open_store(tmp_path / "other.db")
    return KnowledgeService(
        store, HashEmbedder(), MemoryVectorIndex(64), NetworkXGraph(tmp_path / "other.json")
    )


@pytest.fixture
def exported(kb: KnowledgeService, store: SqlStore, tmp_path: Path) -> Path:
    add_campaign(store, "cmp_a", "alice")
    add_trial(store, "trl_1", "cmp_a", seed=5)
    repro = Evidence(claim_id="clm_1", kind="trial", ref_id="trl_r", role="reproduction", detail={"seed": 9})
    kb.add_claim(
        make_claim("clm_1", campaign="cmp_a"), [*trial_evidence("clm_1", "trl_1"), repro], actor="agent"
    )
    kb.transition("clm_1", "reproduced", actor="agent", role="agent", reason="fresh seeds")
    kb.transition("clm_1", "validated", actor="bob", role="reviewer", reason="ok")
    kb.add_claim(make_claim("clm_2", to="dicefocal", estimate=-0.02), [], actor="agent")
    kb.add_claim(make_claim("clm_q", factor="lr", frm=0.1, to=1.0), [], actor="agent")
    kb.quarantine("clm_q", why="bad", actor="bob", role="reviewer")
    path = tmp_path / "share.jsonl"
    assert export_claims(store, path) == 2  # quarantined claims stay home by default
    return path


def test_export_carries_provenance_and_import_enters_external(exported: Path, tmp_path: Path) -> None:
    lines = [json.loads(x) for x in exported.read_text().splitlines()]
    first = next(x for x in lines if x["claim"]["id"] == "clm_1")
    prov = next(e for e in first["evidence"] if e["ref_id"] == "trl_1")["detail"]["provenance"]
    assert prov["seed"] == 5 and prov["dataset_checksum"] == "c" * 64 and prov["spec_hash"]
    assert first["origin"]["tier"] == "validated"
    other = _other_kb(tmp_path)
    counts = import_claims(other, exported, source="lab-a", actor="dana")
    assert counts == {"read": 2, "imported": 2, "already_present": 0}
    claims = {c.id: c for c in other.store.claims.list()}
    assert {c.tier for c in claims.values()} == {"external"}  # validated elsewhere is not validated here
    assert claims["clm_1"].campaign_id is None and claims["clm_1"].author == "agent"
    src = [e for e in other.store.evidence.list("clm_1") if e.kind == "source"]
    assert src[0].ref_id == "source:lab-a" and src[0].detail["tier"] == "validated"
    assert import_claims(other, exported, source="lab-a", actor="dana")["imported"] == 0  # idempotent
    # One quarantine pulls the whole source out.
    q = other.quarantine("source:lab-a", why="lab retracted", actor="erin", role="reviewer")
    assert set(q.members) == {"clm_1", "clm_2"} and q.target_type == "source"


def test_external_claims_can_only_earn_trust_locally(exported: Path, tmp_path: Path) -> None:
    from medloop.core.errors import TrustError

    other = _other_kb(tmp_path)
    import_claims(other, exported, source="lab-a", actor="dana")
    with pytest.raises(TrustError, match="external -> validated"):
        other.transition("clm_1", "validated", actor="erin", role="reviewer", reason="they validated it")
    # Their reproduction trials do not count here: only re-runs recorded locally would.
    assert other.store.claims.get("clm_1").tier == "external"


def test_bad_line_names_file_and_line_and_writes_nothing(exported: Path, tmp_path: Path) -> None:
    lines = exported.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["claim"]["effect"]["estimate"] = "large"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
    other = _other_kb(tmp_path)
    with pytest.raises(SpecError, match=r"bad.jsonl:2: claim.effect.estimate"):
        import_claims(other, bad, source="lab-a", actor="dana")
    assert other.store.claims.list().items == []
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{oops\n")
    with pytest.raises(SpecError, match=r"garbage\.jsonl:1: not valid JSON"):
        import_claims(other, garbage, source="x", actor="dana")


def test_cli_export_import_conflicts_review(workspace: Path, tmp_path: Path) -> None:
    env_cli = [sys.executable, "-m", "medloop"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*env_cli, *args], capture_output=True, text=True, timeout=120)

    from medloop.core.settings import Settings
    from medloop.core.store import open_store
    from medloop.knowledge import lock
    from medloop.knowledge.factory import make_knowledge_base

    s = Settings()
    kb = make_knowledge_base(s, open_store(s.db_path))
    kb.add_claim(make_claim("clm_up"), [], actor="agent")
    kb.add_claim(make_claim("clm_down", estimate=-0.03), [], actor="agent")
    kb.close()
    refused_rebuild = run("knowledge", "rebuild")
    assert refused_rebuild.returncode == 4 and "index writer" in refused_rebuild.stderr
    lock.release(s.workspace_dir / "knowledge" / "writer.lock")  # as if this process ended
    conflicts = json.loads(run("claims", "conflicts", "--json").stdout)
    assert [{c["a"], c["b"]} for c in conflicts] == [{"clm_up", "clm_down"}]
    out = tmp_path / "x.jsonl"
    assert run("knowledge", "export", str(out), "--json").returncode == 0
    refused = run("claims", "review", "clm_up", "validated", "--reason", "r")
    assert refused.returncode == 5 and "supported -> validated" in refused.stderr
    q = json.loads(run("knowledge", "quarantine", "clm_up", "--why", "typo", "--json").stdout)
    assert q["members"] == {"clm_up": "supported"}
    assert json.loads(run("claims", "conflicts", "--json").stdout) == []
    listed = json.loads(run("knowledge", "quarantines", "--json").stdout)
    assert [x["id"] for x in listed] == [q["id"]]
    assert run("knowledge", "unquarantine", q["id"], "--reason", "fixed").returncode == 0
    status = json.loads(run("knowledge", "status", "--json").stdout)
    assert status["claims"] == 2 and status["vectors"] == 2 and status["tiers"] == {"supported": 2}
    imported = run("knowledge", "import", str(out), "--source", "mirror", "--json")
    assert json.loads(imported.stdout) == {"read": 2, "imported": 0, "already_present": 2}
    rebuilt = run("knowledge", "rebuild", "--json")
    assert json.loads(rebuilt.stdout)["vectors"] == 2, rebuilt.stderr
