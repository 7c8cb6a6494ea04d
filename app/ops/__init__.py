"""Operations: probes, Prometheus metrics, request ids and structured logs, rate limits, leases.

`init_ops(app, api, domain, workers, store)` wires it all into an app: a middleware of `workers` times
every job handler, and its start and stop hooks start and stop heartbeat and maintenance.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import OpsSettings, settings_of
from ..domain import Domain
from ..faults import DATABASE, EXPORTS, IMPORTS
from ..jobs import Workers
from ..store import Store
from .health import READINESS, Readiness, StorageCheck, blp
from .heartbeat import WorkerHeartbeats
from .lease import MaintenanceLease, run_exclusively
from .logs import REQUEST_ID_HEADER, install_logging, request_id_from
from .maintenance import (
    add_maintenance_task,
    purge_expired,
    recover_leases,
    start_worker_services,
    stop_worker_services,
)
from .metrics import EXTENSION, LiveCollector, Metrics
from .ratelimit import DIFF_ENDPOINTS, RateLimiter, bucket_of, caller_key, is_content_request

__all__ = ["MaintenanceLease", "add_maintenance_task", "init_ops", "run_exclusively",
           "start_worker_services", "stop_worker_services"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("termsync.access")

RATE_LIMITER = "termsync.ratelimit"
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def init_ops(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Probes, metrics, request ids, logs, rate limits and maintenance for one app.

    Job handlers are timed by a middleware of `workers`, and heartbeat and maintenance follow the
    job threads through its start and stop hooks, so features may register before or after this.
    """
    settings = settings_of(app).ops
    install_logging(settings.log_format, settings.log_level)
    # Where absolute URLs point: PUBLIC_URL, over whatever a trusted proxy said (ProxyFix runs
    # first and still gives the client's address for rate limits and logs).
    if settings.public_url:
        app.wsgi_app = PublicOrigin(app.wsgi_app, settings.public_url)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops,  # type: ignore[method-assign]
                                x_port=hops)

    heartbeats = WorkerHeartbeats(store.heartbeats)
    heartbeat_timeout = settings.worker_heartbeat_seconds * 3
    metrics = Metrics()
    metrics.add_live(LiveCollector(workers.queue, heartbeats, heartbeat_timeout))
    app.extensions[EXTENSION] = metrics
    workers.use(metrics.instrument_job)
    limiter = RateLimiter(store.rate_counters, settings.rate_limit_window_seconds)
    app.extensions[RATE_LIMITER] = limiter
    app.extensions[READINESS] = Readiness(store, workers.queue, settings.ready_min_workers, heartbeat_timeout,
                                          storage_check(app, store))
    api.register_blueprint(blp)
    _register_hooks(app, settings, metrics, limiter)

    max_attempts = settings_of(app).jobs.max_attempts
    add_maintenance_task(app, "jobs-recover-leases", settings.maintenance_interval,
                         lambda: recover_leases(workers.queue, max_attempts))
    add_maintenance_task(app, "ops-purge-expired", settings.maintenance_interval,
                         lambda: purge_expired(store, workers.queue.clock()))
    workers.on_start(lambda threads: start_worker_services(app, threads))
    workers.on_stop(lambda: stop_worker_services(app))


def storage_check(app: Flask, store: Any) -> StorageCheck:
    """What /readyz writes to: the database's directory (SQLite), EXPORT_DIR (local files, and
    the temp files of every build) and IMPORT_DIR (local uploads)."""
    settings = settings_of(app)
    directories: dict[str, str] = {}
    database_file = store.writable_path()
    if database_file is not None:
        directories[DATABASE] = os.path.dirname(database_file)
    directories[EXPORTS] = os.path.abspath(settings.exports.directory)
    if settings.imports.storage == "local":
        directories[IMPORTS] = os.path.abspath(settings.imports.directory)
    return StorageCheck(directories, database_file)


class PublicOrigin:
    """WSGI middleware: every request is answered as if made to PUBLIC_URL, so that every
    absolute URL the app builds from the request (`next`, `Link`, `exportURL`, feed and
    webhook links, the console's) names that origin, whatever Host (or X-Forwarded-Host) the
    request carries: a cache in front cannot be made to hand another host's links to everyone."""

    def __init__(self, app: Any, public_url: str) -> None:
        parts = urlsplit(public_url)
        self.app = app
        self.scheme = parts.scheme
        self.host = parts.netloc
        self.server_name = parts.hostname or ""
        self.server_port = str(parts.port or (443 if parts.scheme == "https" else 80))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ.update({"wsgi.url_scheme": self.scheme, "HTTP_HOST": self.host,
                        "SERVER_NAME": self.server_name, "SERVER_PORT": self.server_port})
        return self.app(environ, start_response)


def _register_hooks(app: Flask, settings: OpsSettings, metrics: Metrics,
                    limiter: RateLimiter) -> None:
    from ..api.common import error_response

    @app.before_request
    def ops_before_request() -> Response | None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.ops_started = time.perf_counter()
        endpoint = request.endpoint
        if request.method == "GET" and endpoint in DIFF_ENDPOINTS and is_content_request(request.args):
            target = "version" if endpoint.startswith("versions.") else "source"
            incremental = "true" if request.args.get("updatedSince") else "false"
            metrics.diff_requests.labels(target, incremental).inc()
        bucket = bucket_of(request.method, request.path, endpoint, request.args)
        if bucket is None:
            return None
        limit = settings.rate_limits[bucket]
        if limit <= 0:
            return None
        who = caller_key(request.headers.get("Authorization", ""), request.remote_addr)
        allowance = limiter.hit(bucket, who, limit)
        g.rate_limit = allowance
        if allowance.allowed:
            return None
        metrics.rate_limited.labels(bucket).inc()
        logger.info("rate limited: %s for %s", bucket, who.split(":")[0])
        return error_response(
            429, f"Too many {bucket} requests: at most {limit} per "
                 f"{limiter.window_seconds} seconds. Retry after {allowance.reset_seconds} seconds.",
            headers={"Retry-After": str(allowance.reset_seconds), **allowance.headers()})

    @app.after_request
    def ops_after_request(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        allowance = g.get("rate_limit")
        if allowance is not None:
            response.headers.update(allowance.headers())
        started = g.get("ops_started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.http_latency.labels(request.method, route).observe(elapsed)
        if settings.access_log:
            level = logging.DEBUG if request.path in PROBES else logging.INFO
            access_logger.log(
                level, "%s %s %s %.1fms", request.method, request.full_path.rstrip("?"),
                response.status_code, elapsed * 1000,
                extra={"method": request.method, "path": request.path, "route": route,
                       "status": response.status_code, "duration_ms": round(elapsed * 1000, 2),
                       "remote_addr": request.remote_addr})
        return response
