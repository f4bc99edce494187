"""`python -m medloop.experiments run --spec SPEC --out OUT`: the job entry point (and
`interact --spec SPEC --prompts PROMPTS --out OUT`, one round of a promptable evaluation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medloop.core.errors import SpecError
from medloop.experiments.job import EXIT_BAD_SPEC, run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medloop.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one trial as described by a TrialSpec JSON file")
    run.add_argument("--spec", type=Path, required=True, help="TrialSpec JSON; data lies beside it")
    run.add_argument("--out", type=Path, required=True, help="output folder (result.json, predictions/)")
    rounds = sub.add_parser("interact", help="one round of simulated interaction (promptable trials)")
    rounds.add_argument("--spec", type=Path, required=True, help="TrialSpec JSON; data lies beside it")
    rounds.add_argument("--prompts", type=Path, required=True, help="the host's prompts of this round")
    rounds.add_argument("--out", type=Path, required=True, help="output folder (result.json, predictions/)")
    args = parser.parse_args(argv)
    # MONAI imports `transformers` when it is installed (for networks a segmentation job
    # never builds), about 4 s of every job's start-up. In a segmentation job's process
    # only, mark it unavailable: MONAI's optional imports then skip it. VLM jobs need it.
    if _task(args.spec) in ("segmentation", "pretrain", "promptable", "classification"):
        sys.modules.setdefault("transformers", None)  # type: ignore[arg-type]
    try:
        if args.command == "interact":
            from medloop.experiments.promptable.interact import run_interaction

            return run_interaction(args.spec, args.prompts, args.out)
        return run_job(args.spec, args.out)
    except SpecError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_SPEC


def _task(spec: Path) -> str | None:
    """The spec's task, read cheaply; None if unreadable (run_job reports that properly)."""
    import json

    try:
        task = json.loads(spec.read_text()).get("task", "segmentation")
    except (OSError, ValueError, AttributeError):
        return None
    return task if isinstance(task, str) else None


if __name__ == "__main__":
    sys.exit(main())
