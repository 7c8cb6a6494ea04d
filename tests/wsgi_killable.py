"""The production WSGI app (`wsgi:app`) with a test-only crash point from TERMSYNC_TEST_KILL_AT
(or hold points from TERMSYNC_TEST_HOLD_AT, tests/launcher.py), for gunicorn workers in tests:
`gunicorn -c gunicorn.conf.py tests.wsgi_killable:app`."""

from __future__ import annotations

import os

from tests.launcher import ENV, HOLD_AT_ENV, HOLD_DIR_ENV, install

if os.environ.get(ENV):
    install(os.environ[ENV])
if os.environ.get(HOLD_AT_ENV):
    install(os.environ[HOLD_AT_ENV], os.environ[HOLD_DIR_ENV])

from wsgi import app

__all__ = ["app"]
