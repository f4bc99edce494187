"""The environment that keeps third-party libraries offline and quiet. Its own module (stdlib
only) so that `medloop --help` sets it without importing pydantic-settings."""

from __future__ import annotations

# Keeps third-party libraries offline and quiet. Applied by the CLI,
# the demo and the tests before those libraries are imported.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
