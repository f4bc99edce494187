"""Issue 15 item 7: a lab on one machine, with real components, end to end.

Brought up here: a Postgres cluster (the store, checkpoints, the one-driver locks), a
Chroma server (the knowledge index), a Ray cluster of a head and two worker nodes (the
executor), and `medloop serve` (two worker processes) on 127.0.0.1. Two reviewers, each
with their own API token, create and launch one campaign each through the REST API at
the same moment; the server starts one campaign process per campaign, and each process
connects to the Ray cluster by address and runs its trials as Ray tasks (local-process
sandbox on the worker nodes).

Checked: both campaigns complete; every trial is recorded once in Postgres, under its own
campaign, and the set equals what each campaign reports (its hypotheses' arms and final
test-split runs, the API's trial counts) and what the executor ran (one job folder per
trial, nothing extra, nothing missing); the jobs ran on the two worker nodes (both got
work, the head none); the Chroma collection holds exactly the SQL claims; the audit chain
written by three processes at once verifies; the dashboard (API and HTML page) showed
both campaigns running at the same poll and both finished at the end, to both users
(reads are open to every authenticated role), while only the owner may control one.

The campaigns are as small as a claim allows: one hypothesis, 2 seeds per arm (the
minimum), no reproduction, then the 2 final test-split runs: 6 trials of a tiny UNet each.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from medloop.core.settings import OFFLINE_ENV, Settings
from medloop.sandbox.provenance import package_root
from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.ray]

USERS = {"alice": "reviewer", "bob": "reviewer"}
# Each campaign its own baseline and factor, so no trial of one is reused by the other
# (reuse by spec hash across campaigns is a feature, tested elsewhere).
CAMPAIGNS = {
    "alice": {"lr": 0.003, "space": "{loss: [dice, dicece]}"},
    "bob": {"lr": 0.002, "space": "{augmentation: [none, light]}"},
}
FINISHED = ("completed", "incomplete", "stopped", "failed")
# Generous: two loaded cores train 12 tiny UNets two at a time (minutes, not seconds).
CAMPAIGN_DEADLINE_S = 1500.0
POLL_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} unreadable)"


# ---------------------------------------------------------------- the lab's pieces


@dataclass
class RayLab:
    address: str
    worker_ids: set[str]


@contextlib.contextmanager
def ray_cluster(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RayLab]:
    """A head (no CPUs: it schedules, runs no job) and two worker nodes of one CPU each,
    as separate raylets that campaign processes reach by address."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp))
    # The nodes' workers import medloop the way this process does.
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(package_root()), path) if p))
    small = {"object_store_memory": 100 << 20}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False, **small},
        shutdown_at_exit=False,
    )
    try:
        workers = [cluster.add_node(num_cpus=1, num_gpus=0, **small) for _ in range(2)]
        cluster.wait_for_nodes(timeout=180)
        yield RayLab(address=cluster.address, worker_ids={w.node_id for w in workers})
    finally:
        cluster.shutdown()


@contextlib.contextmanager
def serve(env: dict[str, str], cwd: Path) -> Iterator[str]:
    """`medloop serve --workers 2` on a free port; yields its base URL once it answers."""
    port = _free_port()
    log_path = cwd / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "medloop", "serve", "--port", str(port), "--workers", "2"),
                *("--log-level", "warning", "--examples", str(cwd / "examples")),
            ],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"medloop serve exited:\n{_tail(log_path)}"
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"medloop serve did not answer:\n{_tail(log_path)}"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)


def stop_campaign_processes(settings: Settings) -> None:
    """Kill campaign processes the server started that still run (a failed test): each
    runs in its own session (the launcher's start_new_session), so its group is its pid."""
    from medloop.engine.launcher import CampaignProcesses

    launcher = CampaignProcesses(settings)
    pids = [launcher.running_pid(p.stem) for p in launcher.runs_dir.glob("*.json")]
    for pid in filter(None, pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- the dashboard, polled


@dataclass
class Polls:
    """What each user's views said at each poll: campaign id -> (status, running)."""

    api: list[dict[str, dict[str, tuple[str, bool]]]] = field(default_factory=list)
    html: list[dict[str, dict[str, tuple[str, bool]]]] = field(default_factory=list)

    def both_running(self, kind: str, ids: set[str]) -> bool:
        polls = self.api if kind == "api" else self.html
        return any(
            all(seen.get(cid) == ("running", True) for seen in poll.values() for cid in ids) for poll in polls
        )


def api_view(client: httpx.Client, token: str) -> dict[str, tuple[str, bool]]:
    r = client.get("/api/v1/campaigns", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return {c["id"]: (c["status"], c["running"]) for c in r.json()["items"]}


_ROW = re.compile(r'<a href="/campaigns/(cmp_\w+)">.*?</tr>', re.S)
_STATUS = re.compile(r'class="status status-(\w+)"')


def html_view(client: httpx.Client, token: str) -> dict[str, tuple[str, bool]]:
    """The dashboard's campaign table (the page a browser gets), row by row."""
    r = client.get("/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text[:500]
    out = {}
    for row in _ROW.finditer(r.text):
        status = _STATUS.search(row.group(0))
        assert status is not None, row.group(0)
        out[row.group(1)] = (status.group(1), 'class="pulse"' in row.group(0))
    return out


def poll_until_finished(
    client: httpx.Client, tokens: dict[str, str], ids: set[str], logs: dict[str, Path]
) -> Polls:
    polls = Polls()
    deadline = time.monotonic() + CAMPAIGN_DEADLINE_S
    while True:
        api = {user: api_view(client, token) for user, token in tokens.items()}
        polls.api.append(api)
        polls.html.append({user: html_view(client, token) for user, token in tokens.items()})
        seen = api["alice"]
        if all(seen[cid][0] in FINISHED and not seen[cid][1] for cid in ids):
            return polls
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {cid}\n{_tail(logs[cid])}" for cid in ids)
            pytest.fail(f"campaigns did not finish in {CAMPAIGN_DEADLINE_S:.0f} s: {seen}\n{tails}")
        time.sleep(POLL_S)


# ---------------------------------------------------------------- the test


def spec_yaml(user: str, dataset: Path, ray_address: str) -> str:
    c = CAMPAIGNS[user]
    return f"""name: {user}'s lab campaign
goal: Raise mean foreground Dice on a tiny two-site phantom
dataset: {{path: {dataset}, eval_fraction: 0.34}}
baseline: {{model: unet, base_features: 8, depth: 3, loss: dice, lr: {c["lr"]}, iterations: 20, epoch_iterations: 5, batch_size: 4}}
search_space: {c["space"]}
validation: {{seeds_per_arm: 2, reproduction_seeds: 0, bootstrap_resamples: 200}}
budget: {{max_cycles: 1, max_trials: 8}}
executor: {{kind: ray, slots: 2, address: "{ray_address}"}}
sandbox: {{runtime: local, timeout: 10m}}
planner: {{hypotheses_per_cycle: 1}}
"""


def launch_together(url: str, tokens: dict[str, str], specs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each user POSTs their campaign (launch: true) at the same moment."""
    barrier = threading.Barrier(len(tokens))
    answers: dict[str, httpx.Response | BaseException] = {}

    def post(user: str) -> None:
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                barrier.wait(timeout=60)
                answers[user] = client.post(
                    "/api/v1/campaigns",
                    json={"spec_yaml": specs[user], "launch": True},
                    headers={"Authorization": f"Bearer {tokens[user]}"},
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            answers[user] = exc

    threads = [threading.Thread(target=post, args=(user,)) for user in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    out = {}
    for user in tokens:
        answer = answers.get(user)
        assert isinstance(answer, httpx.Response), f"{user}'s launch: {answer!r}"
        assert answer.status_code == 201, answer.text
        out[user] = answer.json()
    return out


def test_two_users_run_campaigns_at_once_on_postgres_chroma_and_ray(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    chroma_url: str,
) -> None:
    from medloop import bootstrap
    from medloop.experiments.dataset import synth_phantom
    from medloop.web.accounts import add_user, issue_token

    try:
        import ray  # noqa: F401
    except ImportError:
        require("ray", False, "the ray package is not installed")
    dataset = synth_phantom(tmp_path / "data" / "Dataset901_TinyPhantom", cases=12, size=32, seed=1)
    (tmp_path / "examples").mkdir()
    workspace = tmp_path / "ws"
    lab_env = {
        "MEDLOOP_WORKSPACE": str(workspace),
        "MEDLOOP_DB_URL": postgres_url,
        "MEDLOOP_CHROMA_URL": chroma_url,
        "MEDLOOP_EMBEDDER": "hash",
    }
    settings = Settings(workspace=workspace, db_url=postgres_url, chroma_url=chroma_url, embedder="hash")
    store = bootstrap.store(settings)  # creates the schema before any server process starts
    tokens = {}
    for user, role in USERS.items():
        add_user(store, user, role, actor="lab-admin")
        tokens[user] = issue_token(store, user, actor="lab-admin")[1]

    with contextlib.ExitStack() as stack:
        # A short folder: Ray's socket paths must stay under the OS limit of 107 bytes.
        ray_lab = stack.enter_context(ray_cluster(tmp_path_factory.mktemp("ray"), monkeypatch))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": os.environ["PYTHONPATH"],
            "RAY_AUTH_MODE": "disabled",
            "RAY_TMPDIR": os.environ["RAY_TMPDIR"],
            **OFFLINE_ENV,
            **lab_env,
        }
        stack.callback(stop_campaign_processes, settings)  # runs after serve stopped
        url = stack.enter_context(serve(env, tmp_path))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=60))

        specs = {user: spec_yaml(user, dataset, ray_lab.address) for user in USERS}
        launched = launch_together(url, tokens, specs)
        ids = {user: a["campaign"]["id"] for user, a in launched.items()}
        assert len(set(ids.values())) == 2
        for user, answer in launched.items():
            assert answer["campaign"]["owner"] == user
            assert answer["pid"], answer
        assert launched["alice"]["pid"] != launched["bob"]["pid"]
        logs = {cid: workspace / "runs" / f"{cid}.log" for cid in ids.values()}

        polls = poll_until_finished(client, tokens, set(ids.values()), logs)

        # The dashboard showed both campaigns running at once, to both users, on the API
        # and on the HTML page; and both finished at the end.
        assert polls.both_running("api", set(ids.values())), polls.api
        assert polls.both_running("html", set(ids.values())), polls.html
        for views in (polls.api[-1], polls.html[-1]):
            for user, seen in views.items():
                for owner, cid in ids.items():
                    assert seen[cid] == ("completed", False), (
                        f"{user} sees {owner}'s campaign as {seen[cid]}:\n{_tail(logs[cid])}"
                    )
        details = {}
        for owner, cid in ids.items():
            for user, token in tokens.items():
                r = client.get(f"/api/v1/campaigns/{cid}", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, (user, r.text)
                assert r.json()["campaign"]["owner"] == owner
            details[cid] = r.json()
        # Reads are open to every role; controls only to the owner (or an admin).
        refused = client.post(
            f"/api/v1/campaigns/{ids['alice']}/pause", headers={"Authorization": f"Bearer {tokens['bob']}"}
        )
        assert refused.status_code == 403 and "belongs to alice" in refused.text, refused.text

    check_trials(settings, postgres_url, ids, details, ray_lab)
    check_knowledge(settings, postgres_url, chroma_url, ids, logs)
    assert bootstrap.store(settings).audit.verify() == (True, None)


# ---------------------------------------------------------------- what is in the store


def _sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(query, args).fetchall()


def reported_trials(detail: dict[str, Any]) -> list[str]:
    """The trials a campaign reports: its hypotheses' arms and its final test-split runs."""
    out: list[str] = []
    for h in detail["hypotheses"]:
        for arm in ("control_trials", "treatment_trials", "reproduction_control", "reproduction_treatment"):
            out += h[arm]
    for arm in ("baseline", "incumbent"):
        out += detail["summary"]["test"][arm]["trials"]
    return out


def check_trials(
    settings: Settings, url: str, ids: dict[str, str], details: dict[str, dict[str, Any]], ray_lab: RayLab
) -> None:
    from medloop.core.records import TrialResult

    rows = _sql(url, "SELECT id, campaign_id, status, result_json FROM trials")
    trial_ids = [r[0] for r in rows]
    assert len(trial_ids) == len(set(trial_ids)), "a trial is recorded twice"
    assert {r[1] for r in rows} == set(ids.values()), "a trial without one of the two campaigns"
    job_keys: list[str] = []
    nodes: set[str] = set()
    for cid, detail in details.items():
        mine = {r[0]: r for r in rows if r[1] == cid}
        reported = reported_trials(detail)
        # The final runs of an unchanged incumbent are the baseline's: listed under both.
        assert set(reported) == set(mine), (cid, sorted(reported), sorted(mine))
        assert len(mine) == detail["budget"]["trials_used"] == sum(detail["trial_counts"].values())
        assert len(mine) == 6, f"{cid}: 4 certification trials and 2 final runs expected, got {len(mine)}"
        for trial_id, _cid, status, result_json in mine.values():
            result = TrialResult.model_validate_json(result_json)
            assert status == "succeeded", (trial_id, result.error)
            assert result.trial_id == trial_id and result.reused_from is None
            job = result.job
            assert job is not None and job.key.startswith(f"{cid}."), (trial_id, job)
            assert job.provenance.runtime == "ray+local", job.provenance
            job_keys.append(job.key)
            node = json.loads((settings.jobs_dir / job.key / "node.json").read_text())
            nodes.add(node["node_id"])
    assert len(job_keys) == len(set(job_keys)), "two trials share one job"
    # What the executor ran is exactly the recorded trials: no lost job, no second attempt.
    ran = {p.parent.name for p in settings.jobs_dir.glob("*/result.json")}
    folders = {p.name for p in settings.jobs_dir.iterdir() if p.is_dir()}
    assert ran == folders == set(job_keys), (sorted(folders), sorted(job_keys))
    # Both workers got work (two jobs at once need both CPUs) and the head, with none, got none.
    assert nodes == ray_lab.worker_ids, f"jobs ran on {nodes}, workers are {ray_lab.worker_ids}"


def check_knowledge(
    settings: Settings, url: str, chroma_url: str, ids: dict[str, str], logs: dict[str, Path]
) -> None:
    import chromadb

    from medloop import bootstrap

    claims = _sql(url, "SELECT id, campaign_id, hypothesis_id FROM claims")
    for cid in ids.values():
        # The campaign process's own report of what it recorded ("claims recorded: clm_...").
        said = set(re.findall(r"claims recorded: (.+)", logs[cid].read_text()))
        logged = {c.strip() for line in said for c in line.split(",")}
        assert logged == {c[0] for c in claims if c[1] == cid}, (cid, logged, claims)
        assert logged, f"{cid} recorded no claim:\n{_tail(logs[cid])}"
    hypotheses = dict(_sql(url, "SELECT id, campaign_id FROM hypotheses"))
    for claim_id, campaign_id, hypothesis_id in claims:
        assert hypotheses[hypothesis_id] == campaign_id, claim_id
        for kind, ref_id in _sql(url, "SELECT kind, ref_id FROM evidence WHERE claim_id = %s", claim_id):
            if kind == "trial":
                [(owner,)] = _sql(url, "SELECT campaign_id FROM trials WHERE id = %s", ref_id)
                assert owner == campaign_id, (claim_id, ref_id)
    kb_id = bootstrap.store(settings).meta.get("kb_id")
    assert kb_id is not None, "no knowledge base was opened"
    host, port = chroma_url.removeprefix("http://").rsplit(":", 1)
    collection = chromadb.HttpClient(host=host, port=int(port)).get_collection(f"medloop_{kb_id}")
    assert set(collection.get(include=[])["ids"]) == {c[0] for c in claims}
