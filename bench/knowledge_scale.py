"""Knowledge base at scale: ingest, planning retrieval, vector search vs brute force,
quarantine, memory; all measured in one run, ratios printed side by side.

    PYTHONPATH=. .venv/bin/python bench/knowledge_scale.py --claims 100000
    PYTHONPATH=. .venv/bin/python bench/knowledge_scale.py --claims 5000 --embedder hash --index memory

Synthetic but shaped like campaign output: claims about ~40 one-factor interventions on
40 datasets (fingerprints, checksums), 3 metrics, 200 campaigns, each claim derived from
4 trials of a shared pool; effects mostly agree per (intervention, dataset group) with
some noise, so contradictions exist but are rare. Targets (issue 5): planning-retrieval
p95 <= 20 ms including the query embedding, ingest >= 300 claims/s, RSS <= 2 GB.
Wall times on a shared machine include other processes' load; CPU-time rates are shown
beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medloop.core.records import Campaign, Claim, ClaimContext, Effect, Evidence, FactorChange
from medloop.core.settings import OFFLINE_ENV, Settings
from medloop.core.specs import parse_campaign_spec
from medloop.core.store import open_store
from medloop.knowledge.base import RetrievalQuery
from medloop.knowledge.factory import make_knowledge_base
from medloop.knowledge.model import embedding_text

FACTORS: dict[str, list[object]] = {
    "loss": ["dice", "dicece", "dicefocal"],
    "augmentation": ["none", "light", "nnunet"],
    "model": ["unet", "segresnet", "dynunet", "swinunetr"],
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "batch_size": [2, 4, 8, 16],
    "depth": [3, 4, 5, 6],
    "optimizer": ["adamw", "sgd"],
}
ORGANS = ["liver", "kidney", "spleen", "pancreas", "aorta", "prostate", "hippocampus", "heart"]
MODALITIES = ["CT", "MRI"]
METRICS = ["dice", "hd95", "nsd"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class World:
    """Deterministic synthetic campaigns, datasets and claims."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.datasets = []
        for i in range(40):
            organ, modality = ORGANS[i % len(ORGANS)], MODALITIES[i % 2]
            fp = {
                "spacing_z": round(self.rng.uniform(0.7, 5.0), 2),
                "spacing_xy": round(self.rng.uniform(0.5, 1.5), 2),
                "n_cases": float(self.rng.randint(20, 1000)),
                "intensity_mean": round(self.rng.uniform(-100, 300), 1),
                "n_sites": float(self.rng.randint(1, 8)),
            }
            self.datasets.append(
                (f"Dataset{100 + i}_{organ.title()}{modality}", f"{i:02d}" * 32, fp, organ, modality)
            )
        self.interventions = [
            (f, a, b) for f, vals in FACTORS.items() for i, a in enumerate(vals) for b in vals[i + 1 :]
        ]
        # The "truth": a direction per (intervention, dataset group, metric).
        self.truth = {
            (iv, g, m): self.rng.choice([1, -1, 0])
            for iv in range(len(self.interventions))
            for g in range(4)
            for m in METRICS
        }

    def claim(self, i: int, campaign: str) -> tuple[Claim, list[Evidence]]:
        rng = self.rng
        iv = rng.randrange(len(self.interventions))
        factor, a, b = self.interventions[iv]
        if rng.random() < 0.5:
            a, b = b, a
        d = rng.randrange(len(self.datasets))
        name, checksum, fp, organ, modality = self.datasets[d]
        metric = METRICS[rng.randrange(3)]
        true = self.truth[(iv, d % 4, metric)] * (1 if (a, b) == self.interventions[iv][1:] else -1)
        noise = rng.gauss(0, 0.01)
        est = 0.02 * true + noise if rng.random() > 0.05 else -0.02 * true + noise  # 5% flipped
        half = abs(rng.gauss(0.012, 0.004)) + 0.002
        significant = abs(est) > half
        p = rng.uniform(0.0001, 0.04) if significant else rng.uniform(0.06, 0.9)
        tier = "supported" if significant and est > 0 else "refuted" if significant else "inconclusive"
        if rng.random() < 0.1:
            tier = "external"
        moved = "raised" if est > 0 else "lowered"
        cid = f"clm_{i:07d}"
        statement = (
            f"On {name} ({organ} {modality}), changing {factor} {a} -> {b} {moved} mean {metric} by {est:+.4f} "
            f"(95% CI {est - half:+.4f} to {est + half:+.4f}; wilcoxon p={p:.3g}; 24 cases x 3 seeds): {tier}"
        )
        effect = Effect(
            metric=metric,
            direction="minimize" if metric == "hd95" else "maximize",
            estimate=est,
            ci_low=est - half,
            ci_high=est + half,
            p_value=p,
            p_adjusted=min(1.0, p * 2),
            test="wilcoxon",
            n_cases=24,
            n_seeds=3,
            min_effect=0.0,
            alpha=0.05,
        )
        claim = Claim(
            id=cid,
            campaign_id=campaign,
            hypothesis_id=None,
            statement=statement,
            changes=[FactorChange(factor=factor, from_value=a, to_value=b)],  # type: ignore[arg-type]
            context=ClaimContext(
                task="segmentation",
                dataset=name,
                dataset_checksum=checksum,
                fingerprint=fp,
                sites=[f"site{d % 5}"],
            ),
            outcome=metric,
            effect=effect,
            tier=tier,  # type: ignore[arg-type]
        )
        trials = {f"trl_{rng.randrange(40_000):06d}" for _ in range(4)}
        evidence = [
            Evidence(
                claim_id=cid,
                kind="trial",
                ref_id=t,
                role="treatment" if k % 2 else "control",
                detail={
                    "seed": k,
                    "provenance": {"seed": k, "dataset_checksum": checksum, "code_version": "0.1.0"},
                },
            )
            for k, t in enumerate(sorted(trials))
        ]
        return claim, evidence

    def query(self, i: int) -> RetrievalQuery:
        rng = random.Random(10_000 + i)
        name, _, fp, organ, modality = self.datasets[rng.randrange(len(self.datasets))]
        factors = rng.sample(sorted(FACTORS), rng.randint(1, 4))
        metric = METRICS[rng.randrange(3)]
        goal = rng.choice(["raise", "improve", "maximise"]) if metric != "hd95" else "lower"
        text = f"{goal} mean {metric} for {organ} {modality} segmentation ({name}) by changing {', '.join(factors)}"
        return RetrievalQuery(
            text=text,
            task="segmentation",
            outcome=metric,
            factors=factors,
            fingerprint=fp,
            k=20,
            purpose="planning",
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000, help="claims per add_claims call")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--index", default="chroma", help="chroma | memory")
    ap.add_argument("--workspace", type=Path, default=None, help="default: a temp folder, deleted after")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)

    ws = args.workspace or Path(tempfile.mkdtemp(prefix="kbscale-"))
    settings = Settings(workspace=ws, embedder=args.embedder, vector_index=args.index)
    store = open_store(settings.db_path)
    kb = make_knowledge_base(settings, store)
    world = World(args.seed)
    campaigns = [f"cmp_bench{i:03d}" for i in range(200)]
    spec = parse_campaign_spec(
        {"name": "bench", "goal": "g", "dataset": "/none", "search_space": {"loss": ["dice", "dicece"]}},
        source="bench",
        check_dataset=False,
    )
    for cid in campaigns:
        store.campaigns.add(Campaign(id=cid, name=cid, spec=spec, owner=f"user{cid[-1]}"))
    print(
        f"workspace {ws}  embedder {kb.embedder.name}  index {type(kb.vectors).__name__}  claims {args.claims}"
    )

    # ---------------------------------------------------------------- ingest
    sample = [embedding_text(World(args.seed + 1).claim(i, campaigns[0])[0].statement) for i in range(500)]
    t, c = time.perf_counter(), time.process_time()
    kb.embedder.embed(sample)
    embed_wall, embed_cpu_s = (time.perf_counter() - t) / 500, (time.process_time() - c) / 500
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, args.claims, args.batch):
        items = [
            world.claim(i, campaigns[i % len(campaigns)])
            for i in range(start, min(args.claims, start + args.batch))
        ]
        kb.add_claims(items, actor="bench")
        if (start // args.batch) % 10 == 0:
            done = start + len(items)
            rate = done / (time.perf_counter() - wall0)
            print(f"  ingested {done:>7}  {rate:6.0f} claims/s  rss {rss_mb():6.0f} MB", flush=True)
    ingest_wall = time.perf_counter() - wall0
    ingest_cpu = time.process_time() - cpu0
    # Promote a share to evidence tiers, as reproduction and review would.
    ids = sorted(store.claims.tiers())
    rng = random.Random(args.seed)
    with store.transaction():
        for cid in rng.sample(ids, len(ids) // 10):
            store.claims.set_tier(cid, rng.choice(["reproduced", "reproduced", "validated"]))

    # ---------------------------------------------------------------- planning retrieval
    for i in range(10):
        kb.retrieve(world.query(i))  # warm caches
    lat, cpu_lat, embed_lat, embed_cpu, evidence_roles = [], [], [], [], 0
    for i in range(args.queries):
        q = world.query(100 + i)
        t, c = time.perf_counter(), time.process_time()
        kb.embedder.embed([q.text + " "])  # a different string: no cache can serve the retrieval below
        embed_lat.append((time.perf_counter() - t) * 1000)
        embed_cpu.append((time.process_time() - c) * 1000)
        t, c = time.perf_counter(), time.process_time()
        res = kb.retrieve(q)
        lat.append((time.perf_counter() - t) * 1000)
        cpu_lat.append((time.process_time() - c) * 1000)
        evidence_roles += sum(r.role == "evidence" for r in res)

    # ---------------------------------------------------------------- vector-only vs brute force
    rows = store.vectors.get(ids)
    matrix = np.stack([np.frombuffer(rows[i].vector, dtype=np.float32) for i in ids])  # (N, dim)
    qvecs = kb.embedder.embed([world.query(5000 + i).text for i in range(args.queries)])
    idx_lat, np_lat, recall = [], [], []
    for qv in qvecs:
        t = time.perf_counter()
        hits = kb.vectors.query(qv, k=10)
        idx_lat.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        sims = matrix @ qv  # (N,)
        top = np.argpartition(-sims, 10)[:10]
        exact = {ids[j] for j in top[np.argsort(-sims[top])]}
        np_lat.append((time.perf_counter() - t) * 1000)
        recall.append(len(exact & {h for h, _ in hits}) / 10)

    # ---------------------------------------------------------------- quarantine one trial
    half = store.graph.max_seq() // 2
    trial = next(
        e.dst
        for e in store.graph.edges(kinds=["derived_from"], after_seq=half, limit=50)
        if e.dst_kind == "trial"
    )
    t = time.perf_counter()
    q = kb.quarantine(trial, why="bench", actor="reviewer1", role="reviewer")
    quarantine_s = time.perf_counter() - t
    citing = set(store.evidence.citing(trial))

    t = time.perf_counter()
    kb.close()
    save_s = time.perf_counter() - t
    peak = rss_mb()

    n = args.claims
    print()
    print(f"{'measure':<46}{'value':>14}{'target':>12}")
    print(f"{'ingest, wall (claims/s)':<46}{n / ingest_wall:>14.0f}{'>= 300':>12}")
    print(f"{'ingest, process CPU time (claims/s)':<46}{n / ingest_cpu:>14.0f}")
    print(
        f"{'  statement embedding alone (claims/s wall | CPU)':<46}{1 / embed_wall:>7.0f} |{1 / embed_cpu_s:>5.0f}"
    )
    print(
        f"{'planning retrieval p50 / p95 (ms)':<46}{pct(lat, 50):>7.1f} /{pct(lat, 95):>5.1f}{'p95 <= 20':>12}"
    )
    print(
        f"{'  query embedding alone p50 / p95 (ms)':<46}{pct(embed_lat, 50):>7.1f} /{pct(embed_lat, 95):>5.1f}"
    )
    print(
        f"{'planning retrieval CPU time p50 / p95 (ms)':<46}{pct(cpu_lat, 50):>7.1f} /{pct(cpu_lat, 95):>5.1f}"
    )
    print(
        f"{'  query embedding alone, CPU p50 / p95 (ms)':<46}{pct(embed_cpu, 50):>7.1f} /{pct(embed_cpu, 95):>5.1f}"
    )
    print(f"{'  evidence-role results per query (mean)':<46}{evidence_roles / args.queries:>14.1f}")
    iname = type(kb.vectors).__name__
    print(
        f"{f'vector-only top-10, {iname} p50 / p95 (ms)':<46}{pct(idx_lat, 50):>7.2f} /{pct(idx_lat, 95):>5.2f}"
    )
    print(
        f"{'vector-only top-10, numpy brute force p50 / p95':<46}{pct(np_lat, 50):>7.2f} /{pct(np_lat, 95):>5.2f}"
    )
    ratio = statistics.median(idx_lat) / statistics.median(np_lat)
    print(f"{'  ratio index / brute force (median)':<46}{ratio:>14.2f}")
    print(f"{'  recall@10 of the index vs exact':<46}{statistics.mean(recall):>14.3f}")
    print(
        f"{'quarantine one trial (s) / claims demoted':<46}{quarantine_s:>9.3f} /{len(q.members):>3}{'< 5 s':>12}"
    )
    print(f"{'  demoted == claims citing the trial':<46}{set(q.members) == citing!s:>14}")
    print(f"{'graph cache save (s)':<46}{save_s:>14.1f}")
    print(f"{'peak resident memory (MB)':<46}{peak:>14.0f}{'<= 2048':>12}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.workspace is None:
        shutil.rmtree(ws, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
