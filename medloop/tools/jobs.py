"""Trials submitted through tools run in a pool of worker threads of the tool server.

Each worker drives one `TrialService.run` (the sandbox does the work; the thread waits
and records progress from the job's JSON-lines events). The trial row in the store is
the truth: a handle is the trial id, so a status call works from any process, and a
resubmission after a server restart re-attaches to the job by its deterministic key.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from medloop.core.errors import MedloopError
from medloop.core.records import Trial
from medloop.core.store import Store
from medloop.engine.base import TrialRequest, TrialService
from medloop.sandbox.base import JobEvent

log = logging.getLogger(__name__)

TrialDone = Callable[[Trial], None]


@dataclass
class Progress:
    """What the job has told us so far (from its stdout events)."""

    submitted: float = field(default_factory=time.time)
    started: float | None = None
    iteration: int | None = None
    loss: float | None = None
    last_event: str | None = None
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "started": self.started is not None,
            "iteration": self.iteration,
            "loss": self.loss,
            "last_event": self.last_event,
            "error": self.error,
            "elapsed_s": round(time.time() - (self.started or self.submitted), 1),
        }


_Work = tuple[TrialService, str, TrialRequest, "TrialDone | None", "Future[None]"]


class TrialJobs:
    """The trial worker pool of one tool server (shared by all callers).

    Workers are daemon threads: a tool server that exits does not wait for running
    trials. Their sandbox jobs keep their deterministic keys, so submitting the same
    trial again (from a new server) re-attaches to the job or collects its result.
    """

    def __init__(self, store: Store, *, slots: int) -> None:
        self.store = store
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._futures: dict[str, Future[None]] = {}
        self._progress: dict[str, Progress] = {}
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._loop, name=f"medloop-tool-trial-{i}", daemon=True)
            for i in range(slots)
        ]
        for worker in self._workers:
            worker.start()

    def active(self, trial_id: str) -> bool:
        with self._lock:
            fut = self._futures.get(trial_id)
            return fut is not None and not fut.done()

    def progress(self, trial_id: str) -> dict[str, Any] | None:
        with self._lock:
            p = self._progress.get(trial_id)
            return p.view() if p else None

    def submit(
        self, service: TrialService, campaign_id: str, request: TrialRequest, on_done: TrialDone | None = None
    ) -> bool:
        """Queue the trial unless it is already queued or running here (False then).
        The pool owns `service` from here on and closes it when the trial ends."""
        tid = request.trial_id
        with self._lock:
            fut = self._futures.get(tid)
            if fut is not None and not fut.done():
                service.close()
                return False
            self._progress[tid] = Progress()
            fut = self._futures[tid] = Future()
            self._queue.put((service, campaign_id, request, on_done, fut))
        return True

    def wait(self, trial_ids: list[str], timeout: float | None) -> None:
        """Block until these trials' workers end or `timeout` seconds pass (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for tid in trial_ids:
            with self._lock:
                fut = self._futures.get(tid)
            if fut is None:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                fut.result(timeout=left)
            except FutureTimeout:
                return

    def pending(self) -> list[str]:
        """Trials queued or running in this process."""
        with self._lock:
            return [tid for tid, fut in self._futures.items() if not fut.done()]

    def close(self) -> None:
        """Stop taking work (queued trials stay pending; running ones finish or are
        re-attached later)."""
        for _ in self._workers:
            self._queue.put(None)

    # ------------------------------------------------------------ worker

    def _on_event(self, trial_id: str, event: JobEvent) -> None:
        with self._lock:
            p = self._progress.setdefault(trial_id, Progress())
            if event.kind == "started":
                p.started = time.time()
            if event.kind != "log" or not event.line:
                p.last_event = event.kind
                return
        try:
            data = json.loads(event.line)
        except ValueError:
            return  # a plain log line (warnings from libraries)
        if not isinstance(data, dict):
            return
        with self._lock:
            p.last_event = str(data.get("event"))
            if data.get("event") == "progress":
                p.iteration = int(data.get("iteration", 0))
                loss = data.get("loss")
                p.loss = float(loss) if isinstance(loss, int | float) else None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            service, campaign_id, request, on_done, fut = item
            if not fut.set_running_or_notify_cancel():
                service.close()
                continue
            self._work(service, campaign_id, request, on_done)
            fut.set_result(None)

    def _work(
        self, service: TrialService, campaign_id: str, request: TrialRequest, on_done: TrialDone | None
    ) -> None:
        tid = request.trial_id
        try:
            trial = service.run(campaign_id, [request], on_event=lambda e: self._on_event(tid, e))[0]
            if on_done is not None:
                on_done(trial)
        except MedloopError as exc:
            # An infrastructure fault (no sandbox, missing image): the trial never ran, so
            # it goes back to pending and a resubmission may try again.
            self._fail(tid, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a worker thread must record any failure (logged with traceback)
            log.exception("tool trial %s crashed", tid)
            self._fail(tid, f"internal error {type(exc).__name__}: {exc}")
        finally:
            service.close()

    def _fail(self, trial_id: str, error: str) -> None:
        with self._lock:
            self._progress.setdefault(trial_id, Progress()).error = error
        self.store.trials.set_status(trial_id, "pending")
