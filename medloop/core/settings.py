"""Process settings (environment variables with the prefix `MEDLOOP_`).

Campaign-level choices live in the campaign spec; these are per-installation choices:
where the workspace is and which backends `bootstrap.py` builds.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Environment that keeps third-party libraries offline and quiet. Applied by the CLI,
# the demo and the tests before those libraries are imported.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class Settings(BaseSettings):
    """Installation settings. Every field can be set as `MEDLOOP_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="MEDLOOP_", extra="ignore")

    workspace: Path = Field(default=Path(".medloop"), description="Folder for the store and indexes")
    db_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql+psycopg://...; default: medloop.db in the workspace",
    )
    embedder: str = Field(default="minilm", description="minilm | minilm-int8 | hash | litellm:<model>")
    vector_index: str = Field(default="chroma", description="chroma | memory | http(s)://chroma")
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
    user: str = Field(default="local", description="Name recorded as the actor of CLI actions")

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
