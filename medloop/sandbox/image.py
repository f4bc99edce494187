"""Building the job runtime image, also on machines that cannot pull from a registry.

- `--base debootstrap`: a Debian base made from the distro mirror with debootstrap and
  `docker import` (needs root), cached as `medloop-base:<suite>`.
- `--wheelhouse DIR`: Python packages are installed from wheels only (`--no-index`) and
  the build runs with network "none"; `--download` first fills DIR with `pip download`.
- The image is skipped when one with the same content hash exists (Dockerfile, base
  image id, requirements, wheel hashes, medloop's own code), then only tagged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

import medloop
from medloop.core.errors import MedloopError, SandboxUnavailable, SpecError
from medloop.sandbox.provenance import package_root
from medloop.sandbox.streaming import run_logged

HASH_LABEL = "org.medloop.content-hash"
DEBOOTSTRAP = "debootstrap"
DEFAULT_BASE = "python:3.11-slim-bookworm"
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,ca-certificates"
# What a job imports when the `job` extra cannot be read from pyproject or metadata.
FALLBACK_JOB_REQUIREMENTS = ["torch", "monai", "nibabel", "numpy", "scipy", "pydantic"]

Log = Callable[[str], None]


class ImageBuildError(MedloopError):
    """The runtime image could not be built (the message carries the build's last lines)."""


class BuildResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: str
    image_id: str
    content_hash: str
    base: str
    cached: bool
    seconds: float


# ---------------------------------------------------------------- requirements and wheels


def job_requirements() -> list[str]:
    """The `job` extra of medloop, each pinned to the version installed on the host.

    Pinning keeps what runs in the image equal to what the host tested against. A package
    the host lacks (an orchestrator installed without the `job` extra) keeps the extra's
    range, so torch still resolves inside `<2.14` (with pip's constraints, the CPU wheel).
    """
    pinned = []
    for name, spec in _job_extra().items():
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(spec)
    return pinned


def _job_extra() -> dict[str, str]:
    """name -> requirement (without markers) of the `job` extra, by name."""
    pyproject = package_root() / "pyproject.toml"
    specs: list[str] = []
    if pyproject.is_file():
        data = tomllib.loads(pyproject.read_text())
        specs = list(data.get("project", {}).get("optional-dependencies", {}).get("job", []))
    if not specs:
        try:
            specs = [r.split(";")[0] for r in metadata.requires("medloop") or [] if 'extra == "job"' in r]
        except metadata.PackageNotFoundError:
            specs = []
    if not specs:
        specs = FALLBACK_JOB_REQUIREMENTS
    out = {}
    for spec in specs:
        name = re.split(r"[<>=!~\[; ]", spec.strip(), maxsplit=1)[0]
        if name:
            out[name] = spec.split(";")[0].strip()
    return dict(sorted(out.items()))


def _dist_name(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower().replace("_", "-").replace(".", "-")


def download_wheels(requirements: list[str], wheelhouse: Path, log: Log) -> None:
    """Fill `wheelhouse` with wheels for `requirements` and their dependencies (pip download).

    Uses the host's pip configuration, so a local wheel such as torch's CPU build is taken
    from its find-links folder and everything else from the package index.
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "-d",
        str(wheelhouse),
        *requirements,
    ]
    log(f"$ pip download -d {wheelhouse} {' '.join(requirements)}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ImageBuildError(
            f"pip download into {wheelhouse} failed: {_last_lines(out.stderr or out.stdout)}",
            hint="check the package index is reachable, or fill the wheelhouse by hand",
        )


def check_wheelhouse(requirements: list[str], wheelhouse: Path) -> list[Path]:
    """The wheels in `wheelhouse`; a clear error if a direct requirement has none."""
    if not wheelhouse.is_dir():
        raise SpecError(
            f"--wheelhouse {wheelhouse}: not a folder", hint="pass --download to create and fill it"
        )
    wheels = sorted(wheelhouse.glob("*.whl"))
    have = {_dist_name(w) for w in wheels}
    missing = [r for r in requirements if re.split(r"[<>=!~ ]", r)[0].lower().replace("_", "-") not in have]
    if missing:
        raise SpecError(
            f"--wheelhouse {wheelhouse} has no wheel for: {', '.join(missing)}",
            hint="add --download to fetch them with pip download (needs the package index once)",
        )
    return wheels


def build_medloop_wheel(dest: Path) -> Path:
    """A pure-Python wheel of the running medloop package, byte-for-byte reproducible."""
    root = Path(medloop.__file__).resolve().parent
    version = medloop.__version__
    dist_info = f"medloop-{version}.dist-info"
    path = dest / f"medloop-{version}-py3-none-any.whl"
    records: list[str] = []

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{arcname},sha256={digest},{len(data)}")

    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    with zipfile.ZipFile(path, "w") as zf:
        for file in files:
            add(zf, f"medloop/{file.relative_to(root).as_posix()}", file.read_bytes())
        add(
            zf,
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: medloop\nVersion: {version}\n".encode(),
        )
        wheel_meta = (
            "Wheel-Version: 1.0\nGenerator: medloop-image\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        add(zf, f"{dist_info}/WHEEL", wheel_meta.encode())
        record = "\n".join([*records, f"{dist_info}/RECORD,,"]) + "\n"
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, record)
    return path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- base image


def default_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources)."""
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        try:
            text = source.read_text()
        except OSError:
            continue
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", text, re.M
        )
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def debootstrap_base(
    client: Any,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    rebuild: bool = False,
    log: Log = print,
) -> str:
    """Make (or reuse) `medloop-base:<suite>` from the distro mirror; returns its tag."""
    import docker

    tag = f"medloop-base:{suite}"
    if not rebuild:
        try:
            client.images.get(tag)
            log(f"base image {tag} exists (use --rebuild-base to make it again)")
            return tag
        except docker.errors.ImageNotFound:
            pass
    exe = shutil.which("debootstrap")
    if exe is None:
        raise ImageBuildError("debootstrap is not installed", hint="apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError(
            "--base debootstrap needs root (it creates device files)", hint="run it with sudo"
        )
    mirror = mirror or default_mirror()
    with tempfile.TemporaryDirectory(prefix="medloop-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = [exe, "--variant=minbase", f"--include={DEBOOTSTRAP_PACKAGES}", suite, str(rootfs), mirror]
        log(f"$ {' '.join(cmd)}")
        code, output = run_logged(cmd, log, what="debootstrap")
        if code != 0:
            raise ImageBuildError(f"debootstrap failed: {_last_lines(output)}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True)
        log(f"$ docker import rootfs.tar {tag}")
        repo, _, version = tag.partition(":")
        client.api.import_image(src=str(tarball), repository=repo, tag=version)
    return tag


# ---------------------------------------------------------------- build


def docker_client() -> Any:
    """A docker SDK client, or SandboxUnavailable if the daemon cannot be reached."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxUnavailable(
            "the docker Python package is not installed", hint="pip install 'medloop[docker]'"
        ) from exc
    try:
        client = docker.from_env(max_pool_size=64, timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(
            f"cannot reach the Docker daemon: {exc}",
            hint="start dockerd (e.g. `dockerd --bridge=none --iptables=false &`) or set DOCKER_HOST",
        ) from exc
    return client


def find_image_by_hash(client: Any, content_hash: str) -> Any | None:
    images = client.images.list(filters={"label": f"{HASH_LABEL}={content_hash}"})
    return images[0] if images else None


def build_image(
    *,
    tag: str,
    base: str = DEFAULT_BASE,
    wheelhouse: Path | None = None,
    download: bool = False,
    force: bool = False,
    mirror: str | None = None,
    suite: str = "bookworm",
    rebuild_base: bool = False,
    client: Any = None,
    log: Log = print,
) -> BuildResult:
    """Build the runtime image `tag`; see the module docstring for the offline path."""
    started = time.monotonic()
    client = client or docker_client()
    if base == DEBOOTSTRAP:
        base = debootstrap_base(client, suite=suite, mirror=mirror, rebuild=rebuild_base, log=log)
    requirements = job_requirements()
    offline = wheelhouse is not None
    wheels: list[Path] = []
    if wheelhouse is not None:
        wheelhouse = wheelhouse.expanduser().resolve()
        if download:
            download_wheels(requirements, wheelhouse, log)
        wheels = check_wheelhouse(requirements, wheelhouse)
    dockerfile = (Path(__file__).parent / "Dockerfile").read_text()
    with tempfile.TemporaryDirectory(prefix="medloop-image-") as tmp:
        ctx = Path(tmp)
        (ctx / "wheels").mkdir()
        (ctx / "medloop").mkdir()
        medloop_wheel = build_medloop_wheel(ctx / "medloop")
        content_hash = _content_hash(client, dockerfile, base, requirements, wheels, medloop_wheel, offline)
        existing = None if force else find_image_by_hash(client, content_hash)
        if existing is not None:
            _tag(existing, tag)
            log(f"image {tag} is up to date ({existing.id[:19]}, content {content_hash[:12]})")
            return BuildResult(
                tag=tag,
                image_id=existing.id,
                content_hash=content_hash,
                base=base,
                cached=True,
                seconds=time.monotonic() - started,
            )
        (ctx / "Dockerfile").write_text(dockerfile)
        (ctx / "requirements.txt").write_text("\n".join(requirements) + "\n")
        _link_all(wheels, ctx / "wheels")
        steps: set[str] = set()  # short ids of the images the build's steps made
        image_id = _docker_build(client, ctx, base, offline, content_hash, _hash_repo(tag), log, steps)
    image = client.images.get(image_id)
    _tag(image, tag)
    prune_old_builds(client, _hash_repo(tag), content_hash, log)
    remove_builder_images(client, steps, log)
    log(f"built {tag} ({image.id[:19]}) in {time.monotonic() - started:.0f} s")
    return BuildResult(
        tag=tag,
        image_id=image.id,
        content_hash=content_hash,
        base=base,
        cached=False,
        seconds=time.monotonic() - started,
    )


def _content_hash(
    client: Any,
    dockerfile: str,
    base: str,
    requirements: list[str],
    wheels: list[Path],
    medloop_wheel: Path,
    offline: bool,
) -> str:
    import docker

    try:
        base_id = client.images.get(base).id
    except docker.errors.ImageNotFound:
        base_id = base  # pulled at build time; the name stands in for its id
    parts = [
        "dockerfile",
        dockerfile,
        "base",
        base_id,
        "offline" if offline else "online",
        *requirements,
        *(f"{w.name}:{_sha256_file(w)}" for w in wheels),
        f"medloop:{_sha256_file(medloop_wheel)}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _link_all(files: Iterable[Path], dest: Path) -> None:
    for src in files:
        try:
            os.link(src, dest / src.name)
        except OSError:
            shutil.copyfile(src, dest / src.name)


def _hash_repo(tag: str) -> str:
    """The repository of `tag`, where each build is also tagged by its content hash."""
    last = tag.split("/")[-1]
    return tag.rsplit(":", 1)[0] if ":" in last else tag


def prune_old_builds(client: Any, repo: str, keep_hash: str, log: Log) -> None:
    """Untag earlier content-hash builds of `repo`; Docker frees an image with no tags left."""
    import docker

    for image in client.images.list(name=repo, filters={"label": HASH_LABEL}):
        for tag in image.tags:
            version = tag.rsplit(":", 1)[-1]
            if re.fullmatch(r"[0-9a-f]{12}", version) and version != keep_hash[:12]:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag)
                    log(f"untagged the earlier build {tag}")


def remove_builder_images(client: Any, steps: set[str], log: Log) -> None:
    """Delete the untagged images this build left behind (the multi-stage builder, over a GB
    with the wheels it installed). Only images whose ids the build printed are touched."""
    import docker

    freed = 0
    for image in client.images.list(filters={"dangling": True}):
        short = image.id.split(":")[-1][:12]
        if short in steps:
            with contextlib.suppress(docker.errors.APIError):
                size = int(image.attrs.get("Size") or 0)
                client.images.remove(image.id, noprune=False)
                freed += size
    if freed:
        log(f"removed the intermediate builder image(s) ({freed / 1e9:.2f} GB)")


def _docker_build(
    client: Any,
    ctx: Path,
    base: str,
    offline: bool,
    content_hash: str,
    repo: str,
    log: Log,
    steps: set[str] | None = None,
) -> str:
    import docker

    repo_tag = f"{repo}:{content_hash[:12]}"
    log(f"$ docker build --build-arg BASE_IMAGE={base} {'--network none ' if offline else ''}-t {repo_tag}")
    tail: list[str] = []
    image_id: str | None = None
    try:
        stream = client.api.build(
            path=str(ctx),
            tag=repo_tag,
            buildargs={"BASE_IMAGE": base, "PIP_OFFLINE": "1" if offline else "0"},
            labels={HASH_LABEL: content_hash, "org.medloop.version": medloop.__version__},
            network_mode="none" if offline else None,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                tail.append(str(chunk["error"]))
                raise ImageBuildError(f"docker build failed: {_last_lines(chr(10).join(tail))}")
            text = str(chunk.get("stream", "")).rstrip()
            if text:
                log(text)
                tail = [*tail[-30:], text]
                step = re.match(r"\s*---> ([0-9a-f]{12})\s*$", text)
                if step and steps is not None:
                    steps.add(step.group(1))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker build failed: {exc.explanation or exc}") from exc
    if image_id is None:
        image_id = client.images.get(repo_tag).id
    return image_id


def _tag(image: Any, tag: str) -> None:
    repo, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    image.tag(repo, version or "latest")


def _last_lines(text: str, n: int = 12) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "(no output)"
