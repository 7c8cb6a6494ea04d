"""The WSGI entry point (gunicorn wsgi:app); the only module-level app."""

import sys

from app import create_app
from app.config import ConfigError
from app.store.base import DatabaseUnusable

try:
    app = create_app()
except (ConfigError, DatabaseUnusable) as exc:
    # One line that says what to fix, not a traceback; a worker that exits with 3 (gunicorn's
    # WORKER_BOOT_ERROR) makes gunicorn stop instead of booting workers for ever.
    print(f"termsync: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None
