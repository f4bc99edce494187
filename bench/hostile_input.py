"""Hostile input benchmark (issue 14, items 14-15): CPU seconds that each hostile input
costs the old way (the code medloop ran before: PyYAML's pure-Python `safe_load`, the
launcher's line map that followed aliases, the backtracking duration regex) next to
medloop's reader now (`core/safeyaml.py`, `core/specs.py`), measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/hostile_input.py [--cap 10]

Each old-way run is a child process with a CPU limit of `--cap` seconds (and 4 GB of
address space): "> cap" means it was still busy when killed. Target (issue 14): no input
under 1 MB holds the process for more than 1 s of CPU; exit status 1 if the new way misses.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 1.0


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


INPUTS: dict[str, Callable[[], str]] = {
    "billion laughs (400 B)": billion_laughs,
    "1 MB goal": lambda: "name: x\ngoal: " + "x" * 990_000 + "\n",
    "17.5k small values (85 kB)": lambda: (
        "".join(f"key{i:05d}: [1, 2, {{a: bbbbbbbbbb}}]\n" for i in range(2_500)) * 1
    ),
    "50 MB goal": lambda: "name: x\ngoal: " + "x" * 50_000_000 + "\n",
    "nested 100k deep": lambda: "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "max_wall: '1' + 200k spaces + 'x'": lambda: "max_wall: '1" + " " * 200_000 + "x'\n",
}

# The old way, run in a child: PyYAML safe_load (pure Python, as medloop called it), then the
# launcher's key-line walk over the composed nodes (it followed aliases), then durations
# through the old regex.
OLD = textwrap.dedent(
    r"""
    import re, sys, yaml
    text = sys.stdin.read()
    data = yaml.safe_load(text)
    out = {}
    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                out[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[f"{prefix}.{i}"] = item.start_mark.line + 1
                walk(item, f"{prefix}.{i}")
    sys.setrecursionlimit(10_000)
    walk(yaml.compose(text), "")
    DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
    if isinstance(data, dict) and isinstance(data.get("max_wall"), str):
        DURATION.match(data["max_wall"])
    """
)


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def old_way(text: str, cap: float) -> tuple[float, str]:
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cap), int(cap) + 1))
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    before = _child_cpu()
    proc = subprocess.run(
        [sys.executable, "-c", OLD],
        input=text,
        text=True,
        capture_output=True,
        preexec_fn=limits,
        check=False,
    )
    spent = _child_cpu() - before
    if proc.returncode < 0 or spent >= cap:
        return spent, f"> {cap:.0f} s (killed)"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return spent, f"{spent:.3f} s, {last.split(':')[0][:22]}"
    return spent, f"{spent:.3f} s"


def new_way(text: str) -> tuple[float, str]:
    from pydantic import ValidationError

    from medloop.core import safeyaml
    from medloop.core.errors import SpecError
    from medloop.core.specs import Budget

    start = time.process_time()
    try:
        data = safeyaml.load(text, source="bench.yaml")
        if isinstance(data, dict) and "max_wall" in data:
            Budget(max_wall=data["max_wall"])
        outcome = "accepted"
    except (SpecError, ValidationError) as exc:
        outcome = "refused: " + str(exc).splitlines()[0].removeprefix("bench.yaml: ")[:44]
    spent = time.process_time() - start
    return spent, f"{spent:.3f} s, {outcome}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cap", type=float, default=10.0, help="CPU seconds allowed to each old-way run")
    args = parser.parse_args()
    print(f"{'input':38} {'bytes':>11}  {'old way (PyYAML + line map)':34}  new way (medloop)")
    worst = 0.0
    for name, make in INPUTS.items():
        text = make()
        _, old = old_way(text, args.cap)
        spent, new = new_way(text)
        if len(text.encode()) < 1_000_000:
            worst = max(worst, spent)
        print(f"{name:38} {len(text.encode()):>11,}  {old:34}  {new}")
    verdict = "met" if worst <= TARGET_S else "MISSED"
    print(f"\nworst new-way CPU for inputs under 1 MB: {worst:.3f} s (target <= {TARGET_S} s: {verdict})")
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
