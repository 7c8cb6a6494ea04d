"""Prometheus metrics: one CollectorRegistry per app, plus handles other modules increment.

Feature code counts what it does through the module-level handles, which resolve to the metrics of
the current app (a no-op outside an app context), so several apps in one process never clash:

    from app.ops.metrics import EXPORT_BUILDS, EXPORT_BUILD_SECONDS, IMPORT_LINES
    EXPORT_BUILDS.labels(outcome="finished").inc()
    IMPORT_LINES.labels(action="created").inc(500)

Job runs (export builds, imports) are also timed generically by kind and outcome.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from werkzeug.local import LocalProxy

from ..jobs import JobLost

logger = logging.getLogger(__name__)

EXTENSION = "termsync.metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUILD_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class LiveCollector(Collector):
    """Gauges read from MongoDB at scrape time: queue depth, oldest wait, live workers."""

    def __init__(self, jobs: Any, heartbeats: Any, heartbeat_timeout: float) -> None:
        self.jobs = jobs
        self.heartbeats = heartbeats
        self.heartbeat_timeout = heartbeat_timeout

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("termsync_database_up", "1 if the database answered this scrape.")
        depth = GaugeMetricFamily("termsync_queue_depth", "Jobs waiting or running.",
                                  labels=["kind", "state"])
        workers = GaugeMetricFamily("termsync_workers_alive",
                                    "Job-running processes with a recent heartbeat.")
        try:
            for (kind, state), count in sorted(self.jobs.active_counts().items()):
                depth.add_metric([kind, state], count)
            workers.add_metric([], len(self.heartbeats.alive(self.heartbeat_timeout)))
            up.add_metric([], 1)
        except Exception as exc:  # a scrape must answer even when the database does not
            logger.warning("metrics: database unavailable (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        yield up
        yield depth
        yield workers


class Metrics:
    """The metrics of one app, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter("termsync_http_requests", "HTTP requests answered.",
                                     ["method", "route", "status"], registry=r)
        self.http_latency = Histogram("termsync_http_request_duration_seconds",
                                      "Time to produce the response (not to stream its body).",
                                      ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.diff_requests = Counter("termsync_diff_requests",
                                     "Subscriber-facing content/diff pages (GET with includeConcepts"
                                     " or includeMappings).", ["target", "incremental"], registry=r)
        self.rate_limited = Counter("termsync_rate_limited", "Requests answered 429.",
                                    ["bucket"], registry=r)
        self.export_builds = Counter("termsync_export_builds", "Export builds by outcome.",
                                     ["outcome"], registry=r)
        self.export_build_seconds = Histogram("termsync_export_build_duration_seconds",
                                              "Export build time by outcome.", ["outcome"],
                                              buckets=BUILD_BUCKETS, registry=r)
        self.import_lines = Counter("termsync_import_lines", "Bulk import lines by action.",
                                    ["action"], registry=r)
        self.job_runs = Counter("termsync_job_runs", "Job runs by kind and outcome.",
                                ["kind", "outcome"], registry=r)
        self.job_seconds = Histogram("termsync_job_duration_seconds", "Job run time.",
                                     ["kind", "outcome"], buckets=BUILD_BUCKETS, registry=r)
        self.live: LiveCollector | None = None

    def add_live(self, collector: LiveCollector) -> None:
        self.live = collector
        self.registry.register(collector)

    def render(self) -> bytes:
        """The text exposition of this app (all gunicorn processes when multiprocess is on)."""
        multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not multiproc_dir:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        # Counters of every gunicorn worker process are in the shared directory; live gauges
        # are read from the database once, here.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        if self.live is not None:
            registry.register(self.live)
        return generate_latest(registry)

    def instrument_job(self, kind: str, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap a job handler so that each run is counted and timed by outcome."""
        if getattr(handler, "_termsync_instrumented", False):
            return handler

        def run(context: Any) -> Any:
            started = time.perf_counter()
            outcome = "failed"
            try:
                result = handler(context)
                outcome = "finished"
                return result
            except JobLost:
                outcome = "lost"
                raise
            finally:
                elapsed = time.perf_counter() - started
                self.job_runs.labels(kind, outcome).inc()
                self.job_seconds.labels(kind, outcome).observe(elapsed)
                if kind.startswith("export"):
                    self.export_builds.labels(outcome).inc()
                    self.export_build_seconds.labels(outcome).observe(elapsed)

        run._termsync_instrumented = True  # type: ignore[attr-defined]
        run.__name__ = getattr(handler, "__name__", "job")
        run.__doc__ = handler.__doc__
        return run


class _NullMetric:
    """What the handles resolve to outside an app: accepts everything, records nothing."""

    def labels(self, *args: Any, **kwargs: Any) -> _NullMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None


_NULL = _NullMetric()


def current_metrics(app: Any | None = None) -> Metrics | None:
    """The metrics of `app` (or the current app), if ops is set up."""
    if app is None:
        if not has_app_context():
            return None
        app = current_app
    return app.extensions.get(EXTENSION)


def _handle(attribute: str) -> Any:
    def resolve() -> Any:
        metrics = current_metrics()
        return getattr(metrics, attribute) if metrics is not None else _NULL
    return LocalProxy(resolve)


EXPORT_BUILDS: Any = _handle("export_builds")
EXPORT_BUILD_SECONDS: Any = _handle("export_build_seconds")
IMPORT_LINES: Any = _handle("import_lines")
DIFF_REQUESTS: Any = _handle("diff_requests")


def oldest_pending_seconds(jobs: Any) -> float | None:
    """How long the oldest PENDING job has waited (created_on is ISO text), or None."""
    oldest = jobs.oldest_pending()
    if not oldest:
        return None
    created = datetime.fromisoformat(str(oldest).replace("Z", "+00:00"))
    return max(0.0, (datetime.now(UTC) - created) / timedelta(seconds=1))
