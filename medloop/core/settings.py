"""Process settings (environment variables with the prefix `MEDLOOP_`).

Campaign-level choices live in the campaign spec; these are per-installation choices:
where the workspace is and which backends `bootstrap.py` builds.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Re-exported: the sandbox runtimes and the tests import it from here.
from medloop.core.offline import OFFLINE_ENV as OFFLINE_ENV


def os_user() -> str:
    """Who runs this process (login name), so that CLI campaigns and decisions belong to a
    person, not to a shared placeholder; "local" when the OS cannot say."""
    import getpass

    try:
        return getpass.getuser() or "local"
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        return "local"


class Settings(BaseSettings):
    """Installation settings. Every field can be set as `MEDLOOP_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="MEDLOOP_", extra="ignore")

    workspace: Path = Field(default=Path(".medloop"), description="Folder for the store and indexes")
    db_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql+psycopg://...; default: medloop.db in the workspace",
    )
    embedder: str = Field(
        default="auto",
        description="auto | minilm | minilm-int8 | hash | hash:<dim> | litellm:<model>; auto: the "
        "workspace's recorded embedder, else minilm with the knowledge extra, else hash:256",
    )
    vector_index: str = Field(
        default="auto",
        description="auto | chroma | memory | http(s)://chroma; auto: chroma with the knowledge extra, else memory",
    )
    chroma_url: str | None = Field(
        default=None,
        description="http(s)://host:port of a Chroma server (`chroma run`); overrides vector_index",
    )
    embedder_api_base: str | None = Field(default=None, description="API base for litellm:<model> embedders")
    embedder_api_key: str | None = None
    runtime: str = Field(default="local", description="Sandbox runtime: local | docker")
    docker_image: str = Field(default="medloop-runtime:latest")
    gpu_ids: str = Field(default="", description="Comma list of GPU ids jobs may use; empty: ask nvidia-smi")
    jobs_per_gpu: int = Field(default=1, ge=1, description="Jobs that may share one GPU at a time")
    llm_model: str | None = Field(default=None, description="litellm model name for the LLM planner")
    llm_api_base: str | None = None
    llm_api_key: str | None = None
    require: str = Field(default="", description="Comma list of backends tests must not skip")
    user: str = Field(
        default_factory=lambda: os_user(),
        description="Name recorded as the actor and owner of CLI actions (default: the OS user)",
    )
    login_failures_per_address: int = Field(
        default=10, ge=1, description="Failed logins from one client address per window before it gets 429"
    )
    login_failures_per_account: int = Field(
        default=30,
        ge=1,
        description="Failed logins for one account per window before they get 429 (see README)",
    )
    login_window: float = Field(default=300.0, gt=0, description="Seconds of the failed-login window")
    refusals_per_user: int = Field(
        default=30, ge=1, description="Refused actions (403) per user per minute before they get 429"
    )
    audit_anchor_file: Path | None = Field(
        default=None,
        description="File the server appends audit-chain anchors (HASH:COUNT) to; keep it off the database's volume",
    )
    audit_anchor_syslog: str | None = Field(
        default=None,
        description="Also send the server's audit anchors to syslog: udp://host:port, tcp://..., /dev/log",
    )
    audit_anchor_interval: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between the server's audit anchors (written only if the log moved)",
    )

    @property
    def workspace_dir(self) -> Path:
        return self.workspace.expanduser().resolve()

    @property
    def store_url(self) -> str:
        """The store's database: `MEDLOOP_DB_URL` (sqlite:///path or
        postgresql+psycopg://user@host:port/db), else medloop.db in the workspace."""
        if not self.db_url:
            return f"sqlite:///{self.workspace_dir / 'medloop.db'}"
        url = self.db_url.strip()
        if url.startswith(("postgres://", "postgresql://")):  # the usual libpq spelling
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        if url.startswith("sqlite:///"):  # absolute: campaign processes may start elsewhere
            return f"sqlite:///{Path(url.removeprefix('sqlite:///')).expanduser().resolve()}"
        if not url.startswith("postgresql+psycopg://"):
            from medloop.core.errors import SpecError

            raise SpecError(
                f"MEDLOOP_DB_URL={self.db_url!r} is not supported",
                hint="use sqlite:///path/to/medloop.db or postgresql+psycopg://user@host:5432/medloop",
            )
        return url

    @property
    def postgres(self) -> bool:
        return self.store_url.startswith("postgresql")

    @property
    def db_path(self) -> Path:
        """The SQLite file of the store (a SpecError when the store is Postgres)."""
        if self.postgres:
            from medloop.core.errors import SpecError

            raise SpecError("the store is Postgres (MEDLOOP_DB_URL), not a SQLite file")
        return Path(self.store_url.removeprefix("sqlite:///")).expanduser().resolve()

    @property
    def vector_target(self) -> str:
        """Where vectors live: the Chroma server of MEDLOOP_CHROMA_URL, else MEDLOOP_VECTOR_INDEX."""
        if self.chroma_url:
            url = self.chroma_url.strip()
            if not url.startswith(("http://", "https://")):
                from medloop.core.errors import SpecError

                raise SpecError(
                    f"MEDLOOP_CHROMA_URL={self.chroma_url!r} is not an http(s):// URL",
                    hint="e.g. MEDLOOP_CHROMA_URL=http://chroma.lab.internal:8000",
                )
            return url
        return self.vector_index

    @property
    def chroma_dir(self) -> Path:
        return self.workspace_dir / "chroma"

    @property
    def jobs_dir(self) -> Path:
        return self.workspace_dir / "jobs"

    @property
    def staging_dir(self) -> Path:
        return self.workspace_dir / "staging"

    @property
    def checkpoints_path(self) -> Path:
        """LangGraph checkpoints beside a SQLite store (a Postgres store keeps them in Postgres)."""
        return self.workspace_dir / "checkpoints.sqlite"

    @property
    def required(self) -> set[str]:
        return {part.strip() for part in self.require.split(",") if part.strip()}
