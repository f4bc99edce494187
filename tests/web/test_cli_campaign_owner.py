"""Issue 14 item 22: a campaign run from the CLI belongs to the person who ran it
(MEDLOOP_USER, else the OS login), so that person cannot validate or reject its claims
from their reviewer account, on the web or through the CLI. Before, CLI campaigns
belonged to the placeholder `local` and nobody was ever refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medloop.core.settings import Settings
from tests.web import builders as B
from tests.web.conftest import Web

RATIONALE = "Reproduced with fresh seeds; the CI excludes zero."


def _medloop(web: Web, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "MEDLOOP_WORKSPACE": str(web.settings.workspace_dir),
        "MEDLOOP_EMBEDDER": "hash",
        "MEDLOOP_VECTOR_INDEX": "memory",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args], capture_output=True, text=True, env=base | env, timeout=600
    )


def _cli_campaign(web: Web, tmp_path: Path, *extra: str, **env: str) -> str:
    spec = tmp_path / "replay.yaml"
    spec.write_text(B.replay_yaml(web.table, name="cli campaign", max_cycles=1))
    before = {c.id for c in web.store.campaigns.list().items}
    run = _medloop(web, "campaign", "run", str(spec), *extra, **env)
    assert run.returncode == 0, run.stderr
    (new,) = {c.id for c in web.store.campaigns.list().items} - before
    return new


def _reject(web: Web, user: str, claim_id: str) -> int:
    r = web.client.post(
        f"/api/v1/claims/{claim_id}/reject", json={"rationale": RATIONALE}, headers=web.auth(user)
    )
    return r.status_code


def test_the_os_user_owns_cli_campaigns_and_cannot_review_their_claims(web: Web, tmp_path: Path) -> None:
    # No MEDLOOP_USER: the login name is the owner (alice is also a reviewer on the web).
    cid = _cli_campaign(web, tmp_path, LOGNAME="alice", USER="alice")
    campaign = web.store.campaigns.get(cid)
    assert campaign.owner == "alice" and campaign.started_by is None
    claims = [c for c in web.store.claims.list(campaign_id=cid) if c.tier in ("supported", "reproduced")]
    assert claims, "the replay campaign makes claims"
    assert _reject(web, "alice", claims[0].id) == 403  # her own campaign
    # Through the CLI too, as herself.
    own = _medloop(web, "claims", "review", claims[0].id, "rejected", "--reason", RATIONALE, LOGNAME="alice")
    assert own.returncode != 0 and "own campaign" in own.stderr and "Traceback" not in own.stderr
    assert _reject(web, "bob", claims[0].id) == 200  # an independent reviewer may


def test_naming_another_owner_does_not_let_the_runner_review(web: Web, tmp_path: Path) -> None:
    cid = _cli_campaign(web, tmp_path, "--owner", "carol", MEDLOOP_USER="alice")
    campaign = web.store.campaigns.get(cid)
    assert (campaign.owner, campaign.started_by) == ("carol", "alice")
    claim = next(c for c in web.store.claims.list(campaign_id=cid) if c.tier in ("supported", "reproduced"))
    r = web.client.post(
        f"/api/v1/claims/{claim.id}/reject", json={"rationale": RATIONALE}, headers=web.auth("alice")
    )
    assert r.status_code == 403 and "owns or started" in r.json()["error"]["message"]
    created = [e for e in web.store.audit.list(object_id=cid) if e.action == "campaign.create"]
    assert created[0].actor == "carol" and created[0].detail["started_by"] == "alice"


def test_settings_user_defaults_to_the_os_login(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MEDLOOP_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "dora")
    assert Settings().user == "dora"
    monkeypatch.setenv("MEDLOOP_USER", "erin")
    assert Settings().user == "erin"
