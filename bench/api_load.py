"""API load benchmark: a store with 10k trials and 10k claims, `medloop serve` on
127.0.0.1, 32 concurrent keep-alive clients. Prints p50/p95/p99 per list endpoint side by
side with a trivial health endpoint measured in the same run (the peer), the server's CPU
per request, and the render time of the campaign page (10k trials) next to the same peer;
once per store backend (SQLite in the workspace, Postgres), then the CPU per request of
both side by side.

    PYTHONPATH=. .venv/bin/python bench/api_load.py [--requests 3000] [--workers 1]
        [--backend sqlite|postgres|both] [--postgres-url postgresql+psycopg://...]

Without --postgres-url a throwaway Postgres cluster is started (tests/postgres.py).
Targets (issue 7): list endpoints p95 <= 50 ms at 32 clients; campaign page <= 1 s.
Exit status 1 if a target is missed. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TRIALS = 10_000
N_CLAIMS = 10_000
CLIENTS = 32
LIST_P95_MS = 50.0
PAGE_S = 1.0


def populate(workspace: Path, db_url: str | None) -> tuple[str, str]:
    """Write a campaign with N_TRIALS trials and N_CLAIMS claims; returns (campaign id, token)."""
    from medloop import bootstrap
    from medloop.core.ids import new_id
    from medloop.core.records import (
        Campaign,
        Claim,
        ClaimContext,
        DatasetManifest,
        Effect,
        FactorChange,
        Hypothesis,
        Trial,
        TrialResult,
        TrialSpec,
    )
    from medloop.core.settings import Settings
    from medloop.core.specs import make_config, parse_campaign_spec
    from medloop.web.accounts import add_user, issue_token

    settings = Settings(workspace=workspace, embedder="hash", vector_index="memory", db_url=db_url)
    store = bootstrap.store(settings)
    spec = parse_campaign_spec(
        {
            "name": "load",
            "goal": "Benchmark the API",
            "dataset": {"path": str(workspace / "data")},
            "baseline": {"loss": "dice", "lr": 0.001},
            "search_space": {
                "loss": ["dice", "dicece"],
                "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            },
            "budget": {"max_trials": N_TRIALS, "max_cycles": 50},
        },
        source="bench",
        check_dataset=False,
    )
    campaign = Campaign(
        id=new_id("cmp"),
        name="load",
        spec=spec,
        owner="alice",
        status="completed",
        baseline_objective=0.70,
        incumbent_objective=0.78,
    )
    manifest = DatasetManifest(
        name="Dataset999_Load",
        checksum="c" * 64,
        channel_names={"0": "CT"},
        labels={"background": 0, "organ": 1},
        train_cases=[f"case_{i:03d}" for i in range(40)],
        eval_cases=[f"case_{i:03d}" for i in range(40, 60)],
    )
    rng = random.Random(0)
    with store.transaction():
        store.campaigns.add(campaign)
        hyps = []
        for i in range(50):
            h = Hypothesis(
                id=new_id("hyp"),
                campaign_id=campaign.id,
                cycle=1 + i // 5,
                statement=f"change lr #{i}",
                changes=[FactorChange(factor="lr", from_value=0.001, to_value=0.002 + i * 1e-4)],
                verdict=rng.choice(["supported", "refuted", "inconclusive"]),
                analysis={
                    "estimate": rng.gauss(0, 0.01),
                    "ci_low": -0.01,
                    "ci_high": 0.02,
                    "p_adjusted": 0.2,
                },
            )
            store.cycles.put_hypothesis(h)
            hyps.append(h.id)
        for cycle in range(1, 11):
            store.cycles.record(
                campaign.id, cycle, {"hypotheses": [], "incumbent_objective": 0.7 + cycle * 0.008}
            )
        config = make_config("segmentation", {"loss": "dice", "lr": 0.001})
        for i in range(N_TRIALS):
            tspec = TrialSpec(dataset=manifest, config=config, seed=i)
            value = 0.70 + 0.08 * rng.random()
            store.trials.put(
                Trial(
                    id=new_id("trl"),
                    campaign_id=campaign.id,
                    hypothesis_id=hyps[i % len(hyps)],
                    arm=rng.choice(["control", "treatment"]),
                    spec=tspec,
                    spec_hash=tspec.spec_hash(),
                    status="succeeded",
                    result=TrialResult(
                        trial_id="-", spec_hash=tspec.spec_hash(), status="succeeded", objective=value
                    ),
                )
            )
        tiers = ["supported", "refuted", "inconclusive", "reproduced", "validated", "rejected"]
        for i in range(N_CLAIMS):
            est = rng.gauss(0.01, 0.02)
            claim = Claim(
                id=new_id("clm"),
                campaign_id=campaign.id,
                hypothesis_id=hyps[i % len(hyps)],
                statement=f"On Dataset999_Load, changing lr raised dice by {est:+.4f} (claim {i})",
                changes=[FactorChange(factor="lr", from_value=0.001, to_value=0.002)],
                context=ClaimContext(
                    task="segmentation", dataset="Dataset999_Load", dataset_checksum="c" * 64
                ),
                outcome="dice",
                effect=Effect(
                    metric="dice",
                    direction="maximize",
                    estimate=est,
                    ci_low=est - 0.01,
                    ci_high=est + 0.01,
                    p_value=0.03,
                    p_adjusted=0.05,
                    test="wilcoxon",
                    n_cases=20,
                    n_seeds=3,
                    min_effect=0.005,
                    alpha=0.05,
                ),
                tier=rng.choice(tiers),
            )
            store.claims.put([(claim, [])])
        add_user(store, "bench", "reviewer", actor="bench")
        _, token = issue_token(store, "bench", actor="bench")
    store.close()
    return campaign.id, token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _client(
    port: int, paths: list[str], token: str, lat: list[float], stop_at: int, counter: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] < stop_at:
            counter[0] += 1
            path = paths[counter[0] % len(paths)]
            req = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}")
    finally:
        writer.close()


def load(
    port: int, token: str, paths: list[str], n: int, clients: int = CLIENTS
) -> tuple[list[float], float]:
    """n requests over `clients` keep-alive connections; returns latencies (s) and wall time."""
    lat: list[float] = []
    counter = [0]

    async def main() -> None:
        await asyncio.gather(*[_client(port, paths, token, lat, n, counter) for _ in range(clients)])

    t0 = time.perf_counter()
    asyncio.run(main())
    return lat, time.perf_counter() - t0


def server_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by the server and its worker processes.
    Unlike latency, this does not depend on what else the machine is running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == root_pid or ppid == root_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", help="an empty database; default: a throwaway cluster")
    args = parser.parse_args()
    cluster = None
    ok, cpu = True, {}
    try:
        for backend in ("sqlite", "postgres"):
            if args.backend not in (backend, "both"):
                continue
            url = None
            if backend == "postgres":
                url = args.postgres_url
                if url is None:
                    from tests.postgres import start_cluster, unavailable

                    if why := unavailable():
                        print(f"\npostgres: not measured ({why})")
                        ok = False
                        continue
                    cluster = start_cluster()
                    url = cluster.create_database("api")
            print(f"\n=== store on {backend}")
            good, cpu[backend] = serve_and_measure(args, url)
            ok &= good
    finally:
        if cluster is not None:
            cluster.stop()
    if len(cpu) == 2:
        print("\nserver CPU ms per request, side by side")
        print(f"{'endpoint':<22}{'sqlite':>10}{'postgres':>10}{'pg/sqlite':>11}")
        for name, value in cpu["sqlite"].items():
            print(
                f"{name:<22}{value:>10.2f}{cpu['postgres'][name]:>10.2f}{cpu['postgres'][name] / value:>11.2f}"
            )
    return 0 if ok else 1


def serve_and_measure(args: argparse.Namespace, db_url: str | None) -> tuple[bool, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="medloop-bench-"))
    try:
        t0 = time.perf_counter()
        campaign_id, token = populate(tmp / "ws", db_url)
        print(f"store: {N_TRIALS} trials + {N_CLAIMS} claims written in {time.perf_counter() - t0:.1f} s")
        port = free_port()
        env = {
            **os.environ,
            "MEDLOOP_WORKSPACE": str(tmp / "ws"),
            "MEDLOOP_EMBEDDER": "hash",
            "MEDLOOP_VECTOR_INDEX": "memory",
            "PYTHONPATH": str(ROOT),
        }
        if db_url:
            env["MEDLOOP_DB_URL"] = db_url
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medloop",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    load(port, token, ["/api/v1/health"], 1, clients=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        print(server.stderr.read().decode() if server.stderr else "")
                        raise
                    time.sleep(0.2)
            return run(port, token, campaign_id, args, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(
    port: int, token: str, campaign_id: str, args: argparse.Namespace, server_pid: int
) -> tuple[bool, dict[str, float]]:
    endpoints = {
        "health (peer)": ["/api/v1/health"],
        "me (auth only)": ["/api/v1/me"],
        "trials": ["/api/v1/trials?limit=50"],
        "trials by campaign": [f"/api/v1/trials?campaign_id={campaign_id}&limit=50"],
        "trials succeeded": ["/api/v1/trials?status=succeeded&limit=50"],
        "claims": ["/api/v1/claims?limit=50"],
        "claims by tier": ["/api/v1/claims?tier=reproduced&tier=supported&limit=50"],
        "claims by metric": ["/api/v1/claims?metric=dice&limit=50"],
        "campaigns": ["/api/v1/campaigns"],
        "audit": ["/api/v1/audit?limit=50"],
    }
    # Cursor pages deep in the listing, not just the first one.
    from base64 import urlsafe_b64encode

    first = f"/api/v1/trials?campaign_id={campaign_id}&limit=50"
    cursors = []
    import json
    import urllib.request

    url = f"http://127.0.0.1:{port}{first}"
    for _ in range(40):
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        ) as r:
            body = json.loads(r.read())
        if not body["next_cursor"]:
            break
        cursors.append(body["next_cursor"])
        url = f"http://127.0.0.1:{port}{first}&cursor={body['next_cursor']}"
    endpoints["trials, later pages"] = [f"{first}&cursor={c}" for c in cursors]
    assert urlsafe_b64encode  # cursors are opaque base64 strings from the server

    for paths in endpoints.values():  # warm up (imports, caches, connections)
        load(port, token, paths, 200)
    rows = []
    peer_p95 = peer_cpu = 0.0
    for name, paths in endpoints.items():
        cpu0 = server_cpu_s(server_pid)
        lat, wall = load(port, token, paths, args.requests)
        cpu = (server_cpu_s(server_pid) - cpu0) / len(lat) * 1000
        p50, p95, p99 = (pct(lat, q) * 1000 for q in (0.5, 0.95, 0.99))
        if name.startswith("health"):
            peer_p95, peer_cpu = p95, cpu
        rows.append((name, p50, p95, p99, len(lat) / wall, cpu))
    print(
        f"\n{CLIENTS} concurrent clients, {args.requests} requests per endpoint, {args.workers} server worker(s)"
    )
    load_avg = os.getloadavg()[0]
    print(f"(machine load average {load_avg:.1f} on {os.cpu_count()} cores during the run)")
    print(
        f"{'endpoint':<22}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}{'p95/peer':>10}"
        f"{'CPU ms/req':>12}{'CPU/peer':>10}  target p95<={LIST_P95_MS:.0f} ms"
    )
    ok = True
    for name, p50, p95, p99, rps, cpu in rows:
        listing = not name.startswith(("health", "me "))
        target = ("ok" if p95 <= LIST_P95_MS else "MISSED") if listing else ""
        ok &= target != "MISSED"
        print(
            f"{name:<22}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}{rps:>9.0f}{p95 / peer_p95:>10.2f}"
            f"{cpu:>12.2f}{cpu / peer_cpu:>10.2f}  {target}"
        )
    worst_cpu = max(row[5] for row in rows if not row[0].startswith(("health", "me ")))
    cores = min(args.workers, os.cpu_count() or 1)
    print(
        f"server CPU per list request <= {worst_cpu:.2f} ms: {args.workers} worker(s) on {cores} idle core(s) "
        f"would serve ~{1000 * cores / worst_cpu:.0f} req/s, ~{CLIENTS * worst_cpu / cores:.0f} ms mean latency "
        f"at {CLIENTS} clients"
    )

    # Campaign page (dashboard HTML) and the API detail: one client, sequential.
    print("\ncampaign with 10k trials, one client, 20 sequential requests")
    print(f"{'page':<34}{'p50 ms':>9}{'max ms':>9}{'p50 / peer':>12}  target <= {PAGE_S:.0f} s")
    peer = statistics.median(load(port, token, ["/api/v1/health"], 20, clients=1)[0])
    for name, path in (
        ("dashboard /campaigns/{id}", f"/campaigns/{campaign_id}"),
        ("API /api/v1/campaigns/{id}", f"/api/v1/campaigns/{campaign_id}"),
    ):
        lat, _ = load(port, token, [path], 20, clients=1)
        p50, worst = statistics.median(lat), max(lat)
        good = worst <= PAGE_S
        ok &= good
        print(
            f"{name:<34}{p50 * 1000:>9.1f}{worst * 1000:>9.1f}{p50 / peer:>12.1f}  {'ok' if good else 'MISSED'}"
        )
    return ok, {row[0]: row[5] for row in rows}


if __name__ == "__main__":
    raise SystemExit(main())
