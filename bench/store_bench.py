"""Store benchmark: the record writes the engine makes for each trial (insert the trial,
mark it running, store its result: three writes, each its own commit, at different times
of the trial's life), on SQLite and on Postgres over 127.0.0.1, side by side with a
raw-driver peer (sqlite3 / psycopg) that writes the same rows with hand-written SQL in
the same run. Latencies are per record write (every one of the three is a sample); the
sum per trial is printed beside them.

    PYTHONPATH=. .venv/bin/python bench/store_bench.py [--trials 400] [--postgres-url URL]

Without --postgres-url a throwaway cluster is started (tests/postgres.py: initdb +
pg_ctl, Postgres defaults: fsync and synchronous_commit on). SQLite runs in WAL with
synchronous=NORMAL (durable at checkpoints), as the store opens it.
Targets (issue 15): per-trial record write p95 <= 5 ms on SQLite, <= 15 ms on Postgres
(checked on the per-write p95).
Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medloop.core.records import (  # noqa: E402
    CaseEvaluation,
    JobResult,
    Provenance,
    SplitEvaluation,
    Trial,
    TrialResult,
    utcnow,
)
from medloop.core.store import SqlStore, open_store  # noqa: E402
from medloop.core.store.campaign_repos import TRIAL  # noqa: E402
from tests.contract.store.conftest import campaign, trial  # noqa: E402

TARGET_MS = {"sqlite": 5.0, "postgres": 15.0}


def realistic_result(t: Trial) -> TrialResult:
    """A result the size the engine stores: 20 cases x 2 metrics x 2 classes, 50 epochs."""
    cases = [
        CaseEvaluation(
            case=f"case_{i:03d}",
            site="a",
            metrics={"dice": {"organ": 0.8, "tumour": 0.6}, "hd95": {"organ": 3.0, "tumour": 7.5}},
        )
        for i in range(20)
    ]
    ev = SplitEvaluation(
        split="eval", cases=cases, summary={"dice": 0.7, "hd95": 5.2}, implementation="medloop.evaluation 1"
    )
    job = JobResult(
        key=f"job-{t.id}",
        status="succeeded",
        exit_code=0,
        wall_s=12.5,
        out_dir=Path("/tmp/out"),
        log_tail="epoch 50 loss 0.12\n" * 20,
        provenance=Provenance(
            code_version="0.1.0", runtime="local", host="bench", started_at=utcnow(), ended_at=utcnow()
        ),
    )
    return TrialResult(
        trial_id=t.id,
        spec_hash=t.spec_hash,
        status="succeeded",
        objective=0.7,
        evaluations={"eval": ev},
        history=[{"epoch": float(i), "loss": 1.0 / (i + 1)} for i in range(50)],
        job=job,
    )


Writes = tuple[Callable[[Trial, TrialResult], Any], ...]


def store_writes(store: SqlStore) -> Writes:
    return (
        lambda t, r: store.trials.put(t),
        lambda t, r: store.trials.set_status(t.id, "running"),
        lambda t, r: store.trials.set_result(t.id, r),
    )


def raw_writes(kind: str, target: str) -> tuple[Writes, Callable[[], None]]:
    """The same three statements on the bare driver, one connection in autocommit (each
    statement its own transaction, as the store runs them)."""
    cols = list(TRIAL.row(trial("x", "cmp_bench"), updated_at="").keys())
    if kind == "sqlite":
        conn: Any = sqlite3.connect(target, isolation_level=None)
        for pragma in (
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
            "busy_timeout = 10000",
        ):
            conn.execute(f"PRAGMA {pragma}")
        mark = "?"
    else:
        import psycopg

        conn = psycopg.connect(target, autocommit=True)
        mark = "%s"
    insert = f"INSERT INTO trials ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))}) ON CONFLICT DO NOTHING"
    status = f"UPDATE trials SET status = {mark}, updated_at = {mark} WHERE id = {mark}"
    done = f"UPDATE trials SET status = {mark}, objective = {mark}, result_json = {mark}, updated_at = {mark} WHERE id = {mark}"

    def put(t: Trial, res: TrialResult) -> None:
        row = TRIAL.row(t, updated_at=utcnow())
        conn.execute(insert, [row[c] for c in cols])

    return (
        put,
        lambda t, r: conn.execute(status, ("running", utcnow(), t.id)),
        lambda t, r: conn.execute(done, (r.status, r.objective, r.model_dump_json(), utcnow(), t.id)),
    ), conn.close


def measure(writes: Writes, prefix: str, n: int) -> tuple[list[float], list[float]]:
    """(ms per write, ms per trial) over n trials."""
    per_write, per_trial = [], []
    for i in range(n):
        t = trial(f"trl_{prefix}_{i:05d}", "cmp_bench", seed=i)
        res = realistic_result(t)  # built outside the timed span: both sides get the same objects
        total = 0.0
        for write in writes:
            t0 = time.perf_counter()
            write(t, res)
            per_write.append((time.perf_counter() - t0) * 1000)
            total += per_write[-1]
        per_trial.append(total)
    return per_write, per_trial


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(kind: str, url: str, raw_target: str, n: int) -> tuple[float, bool]:
    store = open_store(url)
    store.campaigns.add(campaign("cmp_bench"))
    raw, close = raw_writes(kind, raw_target)
    measure(store_writes(store), "warm", 20)
    measure(raw, "rawwarm", 20)
    ours: tuple[list[float], list[float]] = ([], [])
    peer: tuple[list[float], list[float]] = ([], [])
    for rnd in range(4):  # interleaved rounds: both sides see the same machine load
        for side, writes, tag in ((ours, store_writes(store), "s"), (peer, raw, "r")):
            w, t = measure(writes, f"{tag}{rnd}", n // 4)
            side[0].extend(w)
            side[1].extend(t)
    close()
    store.close()
    p95, peer95 = pct(ours[0], 0.95), pct(peer[0], 0.95)
    ok = p95 <= TARGET_MS[kind]
    print(
        f"{kind:<9}{statistics.median(ours[0]):>8.2f}{p95:>8.2f}{pct(ours[0], 0.99):>8.2f}"
        f"{statistics.median(peer[0]):>10.2f}{peer95:>10.2f}{p95 / peer95:>9.2f}"
        f"{pct(ours[1], 0.95):>11.2f}{pct(peer[1], 0.95):>11.2f}   <= {TARGET_MS[kind]:.0f} ms "
        + ("ok" if ok else "MISSED")
    )
    return p95, ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=400, help="trials written per side and backend")
    parser.add_argument(
        "--postgres-url", help="an empty database (postgresql+psycopg://...); default: a throwaway cluster"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="medloop-store-bench-"))
    cluster = None
    try:
        pg_url = args.postgres_url
        if pg_url is None:
            from tests.postgres import start_cluster, unavailable

            why = unavailable()
            if why:
                print(f"postgres: {why}")
            else:
                cluster = start_cluster()
                pg_url = cluster.create_database("bench")
        size = len(realistic_result(trial("x", "c")).model_dump_json())
        print(
            f"record writes per trial: insert, mark running, store result ({size / 1024:.1f} KiB of result JSON)"
        )
        print(f"{args.trials} trials per side; ms; peer = the same SQL on the bare driver, same run")
        print(f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start)")
        print(
            f"{'backend':<9}{'p50':>8}{'p95':>8}{'p99':>8}{'peer p50':>10}{'peer p95':>10}{'p95/peer':>9}"
            f"{'trial p95':>11}{'peer trial':>11}   target (write p95)"
        )
        ok = run("sqlite", f"sqlite:///{tmp / 's.db'}", str(tmp / "s.db"), args.trials)[1]
        if pg_url:
            raw_url = pg_url.replace("postgresql+psycopg://", "postgresql://")
            ok &= run("postgres", pg_url, raw_url, args.trials)[1]
        else:
            ok = False
            print("postgres  not measured (no server): MISSED")
        return 0 if ok else 1
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
