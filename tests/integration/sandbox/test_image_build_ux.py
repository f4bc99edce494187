"""`sandbox build-image` ergonomics: debootstrap's output streams with a heartbeat, and a
multi-stage build leaves no untagged builder image behind."""

from __future__ import annotations

import sys
from pathlib import Path

from medloop.sandbox.streaming import run_logged
from tests.conftest import require


def test_long_commands_stream_lines_and_say_they_are_still_running() -> None:
    seen: list[str] = []
    script = "import sys, time\nprint('I: Retrieving A', flush=True)\ntime.sleep(0.5)\nprint('I: Base done')"
    code, tail = run_logged([sys.executable, "-c", script], seen.append, what="debootstrap", heartbeat_s=0.2)
    assert code == 0 and seen[0] == "I: Retrieving A" and seen[-1] == "I: Base done"
    assert any(line.startswith("debootstrap: still running") for line in seen[1:-1]), seen
    failed, tail = run_logged(
        [sys.executable, "-c", "raise SystemExit('broken mirror')"], seen.append, what="x"
    )
    assert failed == 1 and "broken mirror" in tail


def test_a_build_removes_its_builder_stage(tmp_path: Path) -> None:
    try:
        import docker

        client = docker.from_env()
        client.images.get("medloop-base:bookworm")
        ok, why = True, ""
    except Exception as exc:  # noqa: BLE001 - any failure means no usable daemon/base here
        ok, why = False, f"docker or medloop-base:bookworm: {exc}"
    require("docker", ok, why)
    from medloop.sandbox.image import _docker_build, remove_builder_images

    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS build\nRUN echo built > /made\n"
        "FROM ${BASE_IMAGE}\nCOPY --from=build /made /made\n"
    )
    steps: set[str] = set()
    lines: list[str] = []
    image_id = _docker_build(
        client, tmp_path, "medloop-base:bookworm", True, "f" * 64, "medloop-uxtest", lines.append, steps
    )
    try:
        assert steps, "the build printed its step ids"
        builder_left = [i for i in client.images.list(filters={"dangling": True}) if i.id[7:19] in steps]
        assert builder_left, "the builder stage is an untagged image before the clean-up"
        remove_builder_images(client, steps, lines.append)
        assert not [i for i in client.images.list(filters={"dangling": True}) if i.id[7:19] in steps]
        assert client.images.get(image_id)  # the result itself stays
    finally:
        client.images.remove("medloop-uxtest:ffffffffffff", force=True)
