"""The runtime image's requirements: the `job` extra pinned to the host's versions, and the
extra's own range for a package an orchestrator-only host lacks (never a bare name, which
would let pip pick any torch build)."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from medloop.sandbox import image


def test_installed_job_packages_are_pinned_to_the_host() -> None:
    reqs = image.job_requirements()
    assert f"torch=={metadata.version('torch')}" in reqs
    assert {re.split(r"[<>=]", r)[0] for r in reqs} >= {"torch", "monai", "nibabel"}


def test_a_package_the_host_lacks_keeps_the_extra_range(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name in ("torch", "monai"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(image.metadata, "version", version)
    reqs = image.job_requirements()
    assert "torch>=2.8,<2.14" in reqs and "monai>=1.5,<1.7" in reqs
    assert f"nibabel=={real('nibabel')}" in reqs
