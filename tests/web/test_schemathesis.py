"""Schemathesis over the published OpenAPI document: generated requests (valid and
invalid) against every operation of a populated workspace, as reviewer bob; no server
error, and every status code, content type, header and body as documented."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from medloop.core.settings import Settings
from medloop.web.app import create_app
from tests.web.conftest import Template, Web, make_web

# The schema does not depend on the data: load it from an empty workspace at import.
schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json",
    create_app(Settings(workspace=Path(tempfile.mkdtemp()) / "ws", embedder="hash", vector_index="memory")),
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
_shared: dict[str, Web] = {}


def shared_web(template: Template, factory: pytest.TempPathFactory) -> Web:
    """One populated workspace for all generated requests (they change it, as clients do)."""
    if "web" not in _shared:
        _shared["web"] = make_web(template, factory.mktemp("schemathesis"))
    return _shared["web"]


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_schema(
    case: schemathesis.Case, template: Template, tmp_path_factory: pytest.TempPathFactory
) -> None:
    web = shared_web(template, tmp_path_factory)
    case.call_and_validate(headers=web.auth("bob"), checks=CHECKS, app=web.app)
