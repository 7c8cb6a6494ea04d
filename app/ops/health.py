"""Probes and metrics over HTTP: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from ..store import Store
from .heartbeat import WorkerHeartbeats
from .metrics import CONTENT_TYPE, EXTENSION, oldest_pending_seconds

logger = logging.getLogger(__name__)

READINESS = "termsync.readiness"

blp = Blueprint("ops", __name__, description=(
    "Operations: liveness and readiness probes for load balancers and orchestrators, and "
    "Prometheus metrics. None needs a token; expose them only inside your network."))


class HealthOut(Schema):
    """The process is up."""

    status = fields.String(metadata={"description": "Always `ok`."})


class ReadyOut(Schema):
    """Readiness: the database answers; workers and queue as seen from this instance."""

    status = fields.String(metadata={"description": "`ok`, or `degraded` when fewer job-running "
                                                    "processes are alive than READY_MIN_WORKERS."})
    checks = fields.Dict(metadata={"description": (
        "`database` {ok, latency_ms}, `workers` {ok, alive, expected}, "
        "`queue` {depth, oldest_pending_seconds}, `webhooks` {disabled, hooks} (hooks switched "
        "off after failing: an alert, never a reason to be unready).")})


class NotReadyOut(Schema):
    """Not ready (503): the database does not answer. The error shape plus `checks`."""

    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    checks = fields.Dict()


class Readiness:
    """What /readyz checks, with the store replaceable (tests inject a dead one)."""

    def __init__(self, store: Store, min_workers: int, heartbeat_timeout: float) -> None:
        self.store = store
        self.min_workers = min_workers
        self.heartbeat_timeout = heartbeat_timeout
        # Facts features add to the report (webhooks switched off): shown, never unready.
        self.details: dict[str, Callable[[], dict[str, Any]]] = {}

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(database answers, report). Workers below the minimum degrade but do not fail."""
        started = time.perf_counter()
        try:
            self.store.ping()
        except Exception as exc:
            if not self.store.is_unavailable(exc):
                raise
            logger.error("readiness: database unavailable (%s)", exc.__class__.__name__)
            return False, {"status": "unavailable", "checks": {
                "database": {"ok": False, "error": exc.__class__.__name__}}}
        latency = (time.perf_counter() - started) * 1000
        checks: dict[str, Any] = {"database": {"ok": True, "latency_ms": round(latency, 2)}}
        try:
            alive = len(WorkerHeartbeats(self.store.heartbeats).alive(self.heartbeat_timeout))
            checks["workers"] = {"ok": alive >= self.min_workers, "alive": alive,
                                 "expected": self.min_workers}
            checks["queue"] = {
                "depth": sum(self.store.jobs.active_counts().values()),
                "oldest_pending_seconds": oldest_pending_seconds(self.store.jobs)}
        except Exception as exc:
            if not self.store.is_unavailable(exc):
                raise
            return False, {"status": "unavailable", "checks": dict(
                checks, database={"ok": False, "error": exc.__class__.__name__})}
        for name, detail in self.details.items():
            try:
                checks[name] = detail()
            except Exception:  # a detail never makes the instance unready
                logger.warning("readiness detail %s failed", name, exc_info=True)
        status = "ok" if checks["workers"]["ok"] else "degraded"
        return True, {"status": status, "checks": checks}


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthOut)
    def get(self) -> dict[str, str]:
        """Liveness: the process answers HTTP. Never touches the database."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ReadyOut)
    @blp.alt_response(503, schema=NotReadyOut, description="The database does not answer.")
    def get(self) -> Any:
        """Readiness: 200 while the database answers (with worker and queue state), else 503.

        Dead workers make the answer `degraded`, not 503: taking every web instance out of the
        load balancer because exports build slowly would turn a delay into an outage. Alert on
        `termsync_workers_alive` instead.
        """
        ok, report = current_app.extensions[READINESS].check()
        if ok:
            return report
        from ..api.common import json_response

        # The one error shape, plus what was checked; a Response bypasses the 200 schema.
        return json_response({"code": 503, "status": "Service Unavailable",
                              "message": "The database does not answer.",
                              "checks": report["checks"]}, 503, {"Retry-After": "5"})


@blp.route("/metrics")
class MetricsView(MethodView):
    @blp.doc(security=[])
    @blp.response(200, description="Prometheus text exposition format 0.0.4.",
                  content_type="text/plain")
    def get(self) -> Response:
        """Prometheus metrics of this process (of all gunicorn processes in multiprocess mode)."""
        return Response(current_app.extensions[EXTENSION].render(), mimetype=None,
                        content_type=CONTENT_TYPE)
