"""gunicorn settings for termsync: `gunicorn -c gunicorn.conf.py wsgi:app` (docs/deployment.md).

Every value can be changed through the environment without editing this file. Any number of
worker processes share the database, the embedded SQLite file as well as a MongoDB.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from typing import Any


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _keep_app_date_header() -> None:
    """gunicorn sends the app's Date (the diff protocol's clock, docs/api.md) instead of its own."""
    from app.serving import keep_app_date_header

    keep_app_date_header()


_keep_app_date_header()

bind = os.environ.get("TERMSYNC_BIND", "127.0.0.1:8000")
# Processes: CPU-bound JSON/zip work scales with processes, not threads (the GIL).
workers = _env_int("GUNICORN_WORKERS", _env_int("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads per process: requests mostly wait on the database or stream files.
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 8)
# A request that takes longer than this kills its worker; exports stream from storage, so this
# bounds slow clients only through the send buffer. Downloads of large exports by slow clients
# should go through a buffering proxy (see docs/deployment.md).
timeout = _env_int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
backlog = _env_int("GUNICORN_BACKLOG", 2048)
# Recycle processes now and then (with jitter, so they do not all restart together).
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
# Each process opens its own database connections after the fork (neither pymongo nor sqlite3
# connections survive a fork).
preload_app = False
# The app writes one access line per request itself (with the request id); gunicorn's would
# duplicate it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Addresses of the load balancers allowed to set X-Forwarded-* (gunicorn's own check; termsync
# additionally needs TERMSYNC_TRUSTED_PROXIES=<hops> to use them).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = "termsync"


def on_starting(server: Any) -> None:
    """Prepare multiprocess metrics: stale files of an earlier run would be summed in."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges in multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
