"""Schemathesis over the published OpenAPI document: generated requests (valid and
invalid) against every operation; no server error, every response as documented."""

from __future__ import annotations

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

from tests.web.conftest import Template, make_web

# The app is built from a fixture per test; the schema does not depend on the data.
_schema_app = None


def _app():  # type: ignore[no-untyped-def]
    global _schema_app
    if _schema_app is None:
        import tempfile

        from medloop.core.settings import Settings
        from medloop.web.app import create_app

        _schema_app = create_app(
            Settings(workspace=Path(tempfile.mkdtemp()) / "ws", embedder="hash", vector_index="memory")
        )
    return _schema_app


schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _app())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=12,
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
    global _web
    web = _cached_web(template, tmp_path_factory)
    case.call_and_validate(session=None, headers=web.auth("bob"), checks=CHECKS, app=web.app)


_web = None


def _cached_web(template: Template, factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One populated workspace for all generated requests (they may change it, as clients do)."""
    global _web
    if _web is None:
        _web = make_web(template, factory.mktemp("schemathesis"))
    return _web
