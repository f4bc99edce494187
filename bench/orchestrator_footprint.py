"""The orchestrator's footprint, side by side (issue 15, packaging targets).

1. `medloop --help` wall time against `python -c pass` and `python -c "import typer,
   pydantic"` in the same run (medians of --runs each), and whether torch or monai got
   imported on the way (they must not).
2. Installed size of the distributions `pip install medloop` pulls (the `dependencies`
   closure, read from this environment's metadata), with and without the heavy job-side
   ones (torch, monai and what only they pull), against the 400 MB target.

Usage: python bench/orchestrator_footprint.py [--runs 7]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

JOB_SIDE = {"torch", "monai"}  # what runs inside the sandbox (the `job` extra)


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _name(req: str) -> tuple[str, str]:
    """(normalised name, marker) of a requirement string."""
    head, _, marker = req.partition(";")
    name = re.split(r"[\s<>=!~\[(]", head.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower(), marker


def _applies(marker: str) -> bool:
    if not marker.strip():
        return True
    if "extra" in marker:
        return False
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def closure(roots: list[str], skip: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r not in skip]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        for req in dist.requires or []:
            dep, marker = _name(req)
            if dep not in seen and dep not in skip and _applies(marker):
                todo.append(dep)
    return seen


def installed_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    base = timed([py, "-c", "pass"], args.runs)
    libs = timed([py, "-c", "import typer, pydantic"], args.runs)
    cli = timed([py, "-m", "medloop", "--help"], args.runs)
    probe = "import sys, runpy; sys.argv=['medloop','--help']\ntry:\n runpy.run_module('medloop', run_name='__main__')\nexcept SystemExit: pass\nprint(sorted(m for m in ('torch','monai') if m in sys.modules), file=sys.stderr)"
    heavy = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=False).stderr.strip()
    print(f"medloop --help     {cli:6.3f} s (median of {args.runs}; target <= 0.6 s)")
    print(f"python -c pass     {base:6.3f} s   ratio {cli / base:5.1f}x")
    print(f"import typer,pyd.  {libs:6.3f} s   ratio {cli / libs:5.1f}x")
    print(f"torch/monai loaded by --help: {heavy.splitlines()[-1] if heavy else '?'}")

    roots = [_name(r)[0] for r in md.distribution("medloop").requires or [] if _applies(_name(r)[1])]
    everything = closure(roots, set())
    without = closure(roots, JOB_SIDE)
    sizes = {n: installed_bytes(n) for n in everything}
    mb = 1 << 20
    print(f"\ncore closure, all deps         {sum(sizes.values()) / mb:8.1f} MB ({len(everything)} dists)")
    print(
        f"core closure, no torch/monai   {sum(sizes[n] for n in without) / mb:8.1f} MB ({len(without)} dists)"
    )
    print("largest without torch/monai:")
    for name in sorted(without, key=lambda n: -sizes[n])[:10]:
        print(f"  {name:32s} {sizes[name] / mb:8.1f} MB")
    print("only pulled by torch/monai:")
    for name in sorted(everything - without, key=lambda n: -sizes[n])[:6]:
        print(f"  {name:32s} {sizes[name] / mb:8.1f} MB")


if __name__ == "__main__":
    main()
