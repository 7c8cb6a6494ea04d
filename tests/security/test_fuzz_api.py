"""Fuzz every operation of the app's own OpenAPI spec in-process (no network), with and without
a token: no 500, every response matches the spec, every error is the JSON error shape."""

from __future__ import annotations

import atexit
import os
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

from app import create_app
from tests.conftest import ADMIN, app_config

APP = create_app(app_config(LOAD_DEMO=True))
# A route under collections/{source_id}/ below the collection itself runs the very view of its
# sources/ twin (app.api.common.owner_routes): fuzzing one of the two is enough, and what differs
# for collections is tested in tests/app/test_collections.py.
SCHEMA = schemathesis.openapi.from_wsgi("/api/openapi.json", APP).exclude(
    path_regex=r"/collections/\{source_id\}/.")
CASES_RUN: list[str] = []
ERROR_KEYS = {"code", "status", "message"}
# CI runs the same cases every time; TERMSYNC_FUZZ_EXAMPLES=200 explores new ones at random.
_EXPLORE = int(os.environ.get("TERMSYNC_FUZZ_EXAMPLES", "0"))
FUZZ_SETTINGS = settings(max_examples=_EXPLORE or 8, derandomize=not _EXPLORE, deadline=None,
                         suppress_health_check=list(HealthCheck), database=None)
atexit.register(lambda: CASES_RUN and print(f"\nschemathesis: {len(CASES_RUN)} cases run"))


def _check(case: Any, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    CASES_RUN.append(case.operation.label)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])
    if response.status_code >= 400 and response.content and case.method.upper() != "HEAD":
        body = response.json()
        assert ERROR_KEYS <= set(body), body


@pytest.mark.filterwarnings("ignore")
@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_fuzz_anonymous(case: Any) -> None:
    _check(case, {})


@pytest.mark.filterwarnings("ignore")
@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_fuzz_admin(case: Any) -> None:
    _check(case, dict(ADMIN))
