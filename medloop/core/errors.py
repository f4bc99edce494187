"""One exception root. Entry points (CLI, API, MCP) translate these into user-facing errors.

Outcomes of experiments (a diverged run, an OOM-killed job) are data, never exceptions.
"""

from __future__ import annotations


class MedloopError(Exception):
    """An error medloop raises on purpose. `hint` tells the user what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class SpecError(MedloopError):
    """A campaign spec, trial spec or config file is invalid. Names the file and key."""

    exit_code = 2


class DatasetError(MedloopError):
    """A dataset is missing, unreadable or inconsistent."""

    exit_code = 2


class NotFoundError(MedloopError):
    """A campaign, trial, claim or file that was asked for does not exist."""

    exit_code = 3


class ConflictError(MedloopError):
    """The request conflicts with the current state (e.g. launching a running campaign)."""

    exit_code = 4


class PermissionDenied(MedloopError):
    """The caller's role or ownership does not allow this action."""

    exit_code = 5


class TrustError(PermissionDenied):
    """A trust transition that the lifecycle rules forbid."""


class StoreError(MedloopError):
    """The SQL store is unreachable or its schema is newer than this code."""


class SandboxUnavailable(MedloopError):
    """The sandbox runtime (Docker daemon, Ray cluster) cannot be reached."""


class ImageNotFound(SandboxUnavailable):
    """The sandbox image is missing; build it with `medloop sandbox build-image`."""


class BudgetExhausted(MedloopError):
    """A campaign or caller budget does not allow more work."""


class LLMError(MedloopError):
    """The LLM backend failed in a way a retry or fallback cannot fix."""


class DiskFull(MedloopError):
    """A disk (or quota) filled up: the host or a job could not write. Nothing is lost; free
    space, then resume: the work the full disk broke runs again."""


class MissingExtra(MedloopError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra (`pip install 'medloop[job]'`). Raised by `medloop.core.extras.require`."""

    exit_code = 2
