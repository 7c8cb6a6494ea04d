"""Fuzz every operation of the app's own OpenAPI spec in-process (no network), with and without
a token: no 500, every response matches the spec, every error is the JSON error shape.

Marked slow: some 22,000 cases take a minute and a half, a third of the rest of the suite that
`-m "not slow"` runs; the whole suite (CI) runs them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN, app_on_fresh_database

# The schema comes from an app the fixture builds when the tests run, not at import time. A route
# under collections/{source_id}/ below the collection itself runs the very view of its sources/
# twin (app.api.common.owner_routes): fuzzing one of the two is enough, and what differs for
# collections is tested in tests/app/test_collections.py.
SCHEMA = schemathesis.pytest.from_fixture("openapi_schema").exclude(
    path_regex=r"/collections/\{source_id\}/.")
CASES_RUN: list[str] = []  # counted in the terminal summary (tests/security/conftest.py)
ERROR_KEYS = {"code", "status", "message"}
# CI runs the same cases every time; TERMSYNC_FUZZ_EXAMPLES=200 explores new ones at random.
_EXPLORE = int(os.environ.get("TERMSYNC_FUZZ_EXAMPLES", "0"))
FUZZ_SETTINGS = settings(max_examples=_EXPLORE or 8, derandomize=not _EXPLORE, deadline=None,
                         suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis's lazy loader renames the test node per operation through `_nodeid`, an
    # attribute pytest 9.2 no longer has: give it one (only its reports read it).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def openapi_schema() -> Iterator[Any]:
    """The app's own OpenAPI document, on a demo app every case of the module calls."""
    for application in app_on_fresh_database(LOAD_DEMO=True):
        yield schemathesis.openapi.from_wsgi("/api/openapi.json", application)


def _check(case: Any, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    CASES_RUN.append(case.operation.label)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])
    if response.status_code >= 400 and response.content and case.method.upper() != "HEAD":
        body = response.json()
        assert ERROR_KEYS <= set(body), body


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_fuzz_anonymous(case: Any) -> None:
    _check(case, {})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_fuzz_admin(case: Any) -> None:
    _check(case, dict(ADMIN))
