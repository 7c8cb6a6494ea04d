"""gunicorn settings for termsync: `gunicorn -c gunicorn.conf.py wsgi:app` (docs/deployment.md).

Every value can be changed through the environment without editing this file. The embedded
database (MONGO_URI=mongomock://...) lives in one process's memory, so with it this refuses to
start more than one worker process; use threads for concurrency, or a real MongoDB.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from typing import Any


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _termsync_uri() -> str:
    """MONGO_URI as the app will see it (defaults → TERMSYNC_CONFIG → TERMSYNC_MONGO_URI)."""
    from app.config import load_config

    return str(load_config()["MONGO_URI"])


_EMBEDDED = _termsync_uri().startswith("mongomock://")


def _keep_app_date_header() -> None:
    """gunicorn sends the app's Date (the diff protocol's clock, DESIGN.md) instead of its own."""
    from app.serving import keep_app_date_header

    keep_app_date_header()


_keep_app_date_header()

bind = os.environ.get("TERMSYNC_BIND", "127.0.0.1:8000")
# Processes: CPU-bound JSON/zip work scales with processes, not threads (the GIL).
workers = _env_int("GUNICORN_WORKERS", _env_int("WEB_CONCURRENCY",
                                                1 if _EMBEDDED else multiprocessing.cpu_count() * 2 + 1))
# Threads per process: requests mostly wait on MongoDB or stream files.
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
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0 if _EMBEDDED else 10000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
# Each process builds its own app and MongoClient after the fork: pymongo is not fork-safe.
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


def embedded_refusal(worker_count: int, uri: str) -> str | None:
    """Why this configuration cannot run, or None."""
    if uri.startswith("mongomock://") and worker_count > 1:
        return (f"termsync: refusing to start {worker_count} gunicorn worker processes on the "
                f"embedded database (MONGO_URI={uri}). mongomock keeps the database in one "
                "process's memory: each worker would get its own copy, and writes made through "
                "one would be invisible to (or overwritten by) the others. Run one process with "
                "threads (GUNICORN_WORKERS=1 GUNICORN_THREADS=16), or point "
                "TERMSYNC_MONGO_URI at a real MongoDB.")
    return None


def on_starting(server: Any) -> None:
    """Refuse the embedded database with several processes; prepare multiprocess metrics."""
    reason = embedded_refusal(int(server.cfg.workers), _termsync_uri())
    if reason:
        server.log.error(reason)
        raise SystemExit(reason)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:  # stale files of an earlier run would be summed into the counters
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges in multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
