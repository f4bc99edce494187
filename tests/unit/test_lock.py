"""requirements.lock (what `make install` installs) still satisfies pyproject.toml: every
dependency of the core, of `all` and of `dev` is pinned there, inside its range. A change to
pyproject's dependencies without `make lock` fails here, not next month in CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[_norm(name.strip())] = Version(version.split()[0])
    return pins


def _requirements() -> list[Requirement]:
    """The core dependencies plus extras all and dev, `medloop[...]` self-references expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = ["all", "dev"], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in extras[extra]:
            req = Requirement(spec)
            if _norm(req.name) == "medloop":
                todo += sorted(req.extras)
            else:
                out.append(req)
    return out


def test_the_lock_pins_every_dependency_inside_its_range() -> None:
    pins = _pins()
    wrong = []
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        pin = pins.get(_norm(req.name))
        if pin is None or not req.specifier.contains(pin, prereleases=True):
            wrong.append(f"{req} (lock: {pin})")
    assert not wrong, f"requirements.lock is stale, run `make lock`: {wrong}"


def test_the_lock_takes_torch_from_the_cpu_wheel() -> None:
    """A CUDA build would be several GB and would not match the wheel on disk."""
    torch = _pins()["torch"]
    assert torch.local == "cpu" and torch.public == "2.13.0", torch


def test_the_lock_names_no_local_path() -> None:
    """pip-compile writes the project's own self-reference (`medloop[...]` in extra `all`) as
    `medloop @ file:///<where the lock was made>`: on any other machine `pip install -r`
    stops there ("No such file or directory"). medloop goes in afterwards, editable."""
    local = [
        line
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if not line.lstrip().startswith("#") and ("file:" in line or " @ " in line or line.startswith("-e"))
    ]
    assert not local, f"requirements.lock names a local path, re-run `make lock`: {local}"
