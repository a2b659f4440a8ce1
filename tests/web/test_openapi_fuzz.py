"""A property-based fuzzer over /openapi.json (schemathesis), against the ASGI app in process:
the document describes exactly what the server accepts and answers.

For every operation, generated requests (valid and invalid, with a real bearer token where
the operation takes one) must get: no server error, a status code the document lists for the
operation, the content type it lists, and a body that matches the listed schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from latchkey.web import create_app
from support import make_settings

if not os.environ.get("CI"):  # in CI the dev extra is installed and the fuzzer must run
    pytest.importorskip("schemathesis")

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
USERNAME = "fuzzer"
PASSWORD = "a long enough passphrase"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    app = create_app(make_settings(tmp_path / "data", allow_registration=True))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts its lifespan
    try:
        yield schema
    finally:
        shutdown_lifespans()


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,  # the same examples on every run: a failure in CI is reproducible
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_answers_as_its_document_says(case: Any) -> None:
    headers = {}
    if any("bearer" in option for option in case.operation.definition.raw.get("security", [])):
        headers["Authorization"] = f"Bearer {_access_token(case)}"
    case.call_and_validate(headers=headers, checks=CHECKS)


def _access_token(case: Any) -> str:
    """A fresh access token of a real user (registered on first use), so that the fuzzer
    reaches past the bearer check; the operations under test may well end its session."""
    app = case.operation.schema.app
    with schemathesis.python.asgi.get_client(app) as client:
        credentials = {"username": USERNAME, "password": PASSWORD}
        client.post("/auth/register", json=credentials)  # 409 once the user exists
        response = client.post("/auth/login", json=credentials)
    assert response.status_code == httpx.codes.OK, response.text
    token: str = response.json()["access_token"]
    return token
