"""Probes and metrics over HTTP: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from marshmallow import Schema, fields

from ..api.parsing import Blueprint
from ..faults import DATABASE, StorageFault, probe_directory
from ..jobs import JobQueue
from ..store import Store
from .heartbeat import WorkerHeartbeats
from .metrics import CONTENT_TYPE, EXTENSION, oldest_pending_seconds

logger = logging.getLogger(__name__)

READINESS = "termsync.readiness"
# How long one look at the storage directories serves /readyz (a file written and removed in
# each): load balancers probe often, and a disk fills or is remounted in minutes, not ms.
STORAGE_CHECK_SECONDS = 5.0

blp = Blueprint("ops", __name__, description=(
    "Operations: liveness and readiness probes for load balancers and orchestrators, and "
    "Prometheus metrics. None needs a token; expose them only inside your network."))


class HealthOut(Schema):
    """The process is up."""

    status = fields.String(metadata={"description": "Always `ok`."})


class ReadyOut(Schema):
    """Readiness: the database answers; workers and queue as seen from this instance."""

    status = fields.String(metadata={"description": (
        "`ok`, or `degraded` when fewer job-running processes are alive than "
        "READY_MIN_WORKERS or a storage cannot be written (reads are still served).")})
    checks = fields.Dict(metadata={"description": (
        "`database` {ok, latency_ms}, `workers` {ok, alive, expected}, "
        "`queue` {depth, oldest_pending_seconds}, `storage` {database, exports, imports: "
        "{ok, error?}} (whether a file can be written where each keeps its files), `webhooks` "
        "{disabled, hooks} (hooks switched off after failing: an alert, never a reason to be "
        "unready).")})


class NotReadyOut(Schema):
    """Not ready (503): the database does not answer. The error shape plus `checks`."""

    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    checks = fields.Dict()


class StorageCheck:
    """Whether each storage directory (the database's, EXPORT_DIR, IMPORT_DIR) takes a write
    now, looked at once per STORAGE_CHECK_SECONDS at most."""

    def __init__(self, directories: dict[str, str], database_file: str | None = None,
                 ttl: float = STORAGE_CHECK_SECONDS) -> None:
        self.directories = directories
        self.database_file = database_file
        self.ttl = ttl
        self._lock = threading.Lock()
        self._report: dict[str, dict[str, Any]] = {}
        self._checked = float("-inf")

    def report(self) -> dict[str, dict[str, Any]]:
        """{name: {"ok": bool, "error"?: "ENOSPC: no space left on device"}}."""
        with self._lock:
            if time.monotonic() - self._checked >= self.ttl:
                self._report = {name: self._look(name, directory)
                                for name, directory in self.directories.items()}
                self._checked = time.monotonic()
            return self._report

    def _look(self, name: str, directory: str) -> dict[str, Any]:
        fault = probe_directory(directory)
        if fault is None and name == DATABASE and self.database_file is not None \
                and os.path.exists(self.database_file) \
                and not os.access(self.database_file, os.W_OK):
            fault = StorageFault(name, "EACCES", "the database file is not writable",
                                 self.database_file)
        if fault is None:
            return {"ok": True}
        logger.warning("readiness: %s cannot be written: %s (%s)", name, fault.reason,
                       fault.path or directory)
        return {"ok": False, "error": f"{fault.code}: {fault.reason}"}


class Readiness:
    """What /readyz checks, with the store replaceable (tests inject a dead one)."""

    def __init__(self, store: Store, queue: JobQueue, min_workers: int, heartbeat_timeout: float,
                 storage: StorageCheck | None = None) -> None:
        self.store = store
        self.queue = queue
        self.min_workers = min_workers
        self.heartbeat_timeout = heartbeat_timeout
        self.storage = storage or StorageCheck({})
        # Facts features add to the report (webhooks switched off): shown, never unready.
        self.details: dict[str, Callable[[], dict[str, Any]]] = {}

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(database answers, report). Workers below the minimum degrade but do not fail."""
        started = time.perf_counter()
        try:
            self.store.ping()
        except Exception as exc:
            fault = self.store.fault_of(exc)
            if fault is None and not self.store.is_unavailable(exc):
                raise
            error = f"{fault.code}: {fault.reason}" if fault else exc.__class__.__name__
            logger.error("readiness: database unavailable (%s)", fault or error)
            return False, {"status": "unavailable", "checks": {
                "database": {"ok": False, "error": error}, "storage": self.storage.report()}}
        latency = (time.perf_counter() - started) * 1000
        checks: dict[str, Any] = {"database": {"ok": True, "latency_ms": round(latency, 2)}}
        try:
            alive = len(WorkerHeartbeats(self.store.heartbeats).alive(self.heartbeat_timeout))
            checks["workers"] = {"ok": alive >= self.min_workers, "alive": alive,
                                 "expected": self.min_workers}
            checks["queue"] = {
                "depth": self.queue.depth(),
                "oldest_pending_seconds": oldest_pending_seconds(self.queue)}
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
        checks["storage"] = self.storage.report()
        healthy = checks["workers"]["ok"] and all(
            check["ok"] for check in checks["storage"].values())
        return True, {"status": "ok" if healthy else "degraded", "checks": checks}


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
        """Readiness: 200 while the database answers (with worker, queue and storage state),
        else 503.

        Dead workers, or a storage that cannot be written (a full or read-only disk), make the
        answer `degraded`, not 503: taking every web instance out of the load balancer because
        exports build slowly, or because writes fail while reads still work, would turn a delay
        into an outage. Alert on `degraded` and `termsync_workers_alive` instead.
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
