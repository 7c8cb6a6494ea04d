"""The production WSGI app (`wsgi:app`) with a test-only crash point from TERMSYNC_TEST_KILL_AT,
for gunicorn workers in tests: `gunicorn -c gunicorn.conf.py tests.wsgi_killable:app`."""

from __future__ import annotations

import os

from tests.launcher import ENV, install

if os.environ.get(ENV):
    install(os.environ[ENV])

from wsgi import app

__all__ = ["app"]
