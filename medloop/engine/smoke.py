"""The gate every code hypothesis passes on the host before its trials run: the module
exists and is not quarantined, the runtime may run it (trust), and it survived a smoke
trial: a very short training and prediction in the same sandbox, with the same limits and
a short wall limit. A module that crashes or hangs there is rejected with the reason, and
every trial that names it fails with that reason instead of spending a full run.

A smoke trial is a job, not a recorded trial: it makes no claim and no observation for the
proposer. Its outcome is kept on the module's row in the knowledge base (`smoke`), so a
module is smoked once, whatever campaign names it next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medloop.core.code import CodeModule, source_sha256
from medloop.core.errors import MedloopError, NotFoundError
from medloop.core.records import JobResult, JobSpec, TrialSpec
from medloop.core.specs import CodeSpec, SandboxSpec, SegConfig, make_config
from medloop.core.store import Store
from medloop.engine.code import CodeStore

SMOKE_ITERATIONS = 2  # optimizer steps of a smoke trial: enough to call every extension point
REASON_CHARS = 600  # of a failed smoke job's log kept as the reason


def code_refs(spec: TrialSpec) -> dict[str, str]:
    return spec.config.code_refs() if isinstance(spec.config, SegConfig) else {}


def quarantine_target(sha256: str) -> str:
    """The knowledge-graph node of a code module (claims cite it as a source)."""
    return f"code:{sha256}"


@dataclass
class SmokeOutcome:
    refs: tuple[str, ...]  # sha256 of the modules the smoke job ran
    passed: bool
    reason: str = ""


class CodeGate:
    def __init__(self, store: Store, files: CodeStore, sandbox: SandboxSpec, code: CodeSpec) -> None:
        self.store, self.files, self.sandbox, self.code = store, files, sandbox, code
        self._smoked: dict[str, tuple[str, str]] = {}  # modules kept only in the workspace folder

    def module(self, sha256: str) -> tuple[CodeModule, str]:
        """From the knowledge base, else the workspace's code folder. NotFoundError if neither."""
        try:
            return self.store.code.get(sha256)
        except NotFoundError:
            return self.files.get(sha256)

    def sources(self, spec: TrialSpec) -> dict[str, str]:
        return {sha: self.module(sha)[1] for sha in code_refs(spec).values()}

    def refused(self, spec: TrialSpec) -> str | None:
        """Why this trial may not run its code here, or None. Code that did not ship with
        medloop runs in the Docker sandbox (no network, no host files); the local runtime
        runs it only when the campaign says `sandbox: {allow_untrusted_code: true}`."""
        for point, sha in sorted(code_refs(spec).items()):
            try:
                module, source = self.module(sha)
            except MedloopError as exc:
                return f"code hypothesis ({point}): {exc.message}"
            if source_sha256(source) != sha:
                return f"code module {sha[:12]} ({point}): its stored source no longer matches its hash"
            if self.store.quarantines.list(active_only=True, target_id=quarantine_target(sha)):
                return f"code module {sha[:12]} ({module.name}) is quarantined"
            state = self._smoke_state(sha)
            if state[0] == "failed":
                return f"code module {sha[:12]} ({module.name}) failed its smoke trial: {state[1]}"
            if (
                not module.trusted
                and self.sandbox.runtime == "local"
                and not self.sandbox.allow_untrusted_code
            ):
                return (
                    f"code module {sha[:12]} ({module.name}, by {module.author}) is untrusted: run it in the "
                    "docker sandbox, or set sandbox.allow_untrusted_code: true to let the local runtime run it"
                )
        return None

    def _smoke_state(self, sha256: str) -> tuple[str, str]:
        try:
            state = self.store.code.state(sha256)
        except NotFoundError:  # a module only in the workspace folder: this process's memory
            return self._smoked.get(sha256, ("pending", ""))
        return state.smoke, state.smoke_reason

    def needs_smoke(self, spec: TrialSpec) -> tuple[str, ...]:
        """The code of this trial, if any module of it has not passed a smoke trial yet."""
        refs = code_refs(spec)
        if not self.code.smoke or not refs:
            return ()
        if all(self._smoke_state(sha)[0] == "passed" for sha in refs.values()):
            return ()
        return tuple(sorted(refs.values()))

    def smoke_spec(self, spec: TrialSpec) -> TrialSpec:
        """The same trial cut to a few steps, under the smoke wall limit."""
        config = make_config(
            spec.task,
            {
                **spec.config.model_dump(),
                "iterations": SMOKE_ITERATIONS,
                "epoch_iterations": SMOKE_ITERATIONS,
            },
        )
        return spec.model_copy(update={"config": config, "max_seconds": self.code.smoke_timeout})

    def smoke(
        self,
        specs: Sequence[TrialSpec],
        job_for: Callable[[TrialSpec], JobSpec],
        run: Callable[[list[JobSpec]], list[JobResult]],
    ) -> list[SmokeOutcome]:
        """Smoke every distinct code set among `specs` that needs it (one job each, run
        together), and record each module's outcome. Returns the outcomes."""
        todo: dict[tuple[str, ...], TrialSpec] = {}
        for spec in specs:
            refs = self.needs_smoke(spec)
            if refs and refs not in todo:
                todo[refs] = self.smoke_spec(spec)
        if not todo:
            return []
        jobs = [job_for(spec) for spec in todo.values()]
        results = run(jobs)
        out = []
        for refs, result in zip(todo, results, strict=True):
            passed = result.status == "succeeded"
            reason = "" if passed else _reason(result, self.code.smoke_timeout)
            for sha in refs:
                try:
                    self.store.code.set_smoke(sha, "passed" if passed else "failed", reason)
                except NotFoundError:
                    self._smoked[sha] = ("passed" if passed else "failed", reason)
            out.append(SmokeOutcome(refs, passed, reason))
        return out


def _reason(result: JobResult, timeout: float) -> str:
    if result.status == "timed_out":
        return f"it ran past the smoke limit of {timeout:g} s (a hang or an endless loop)"
    tail = " ".join(result.log_tail.strip().splitlines()[-3:])
    why = result.reason or f"exit code {result.exit_code}"
    return f"{result.status}: {why}" + (f"; log: {tail}" if tail else "")[:REASON_CHARS]
