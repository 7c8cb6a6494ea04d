"""Import jobs as termsync's own view shows them and as OCL's clients read tasks.

Pure functions of a job document (and its stored line results): termsync's states and job shape
(`render_job`), OCL's task shape and Celery state names (`render_task`), OCL's counts, one-line
summary and json result.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..domain.loader import ACTIONS
from ..jobs import CANCELLED, FAILED, FINISHED, PENDING, RUNNING
from ..model import Job
from ..timeutil import FORMAT

STATES = {PENDING: "SUBMITTED", RUNNING: "RUNNING", FINISHED: "FINISHED", FAILED: "FAILED",
          CANCELLED: "CANCELLED"}
# OCL's (Celery's) task states, for OCL's clients: ocldev waits while PENDING or STARTED.
OCL_STATES = {PENDING: "PENDING", RUNNING: "STARTED", FINISHED: "SUCCESS", FAILED: "FAILURE",
              CANCELLED: "REVOKED"}
DEFAULT_QUEUE = "default"  # what OCL calls the queue of a job submitted without one
TASK_NAME = "bulk_import"  # the name of every import task, as OCL lists tasks
# termsync's actions as OCL's result keys ("skipped": existed, update_if_exists=false)
OCL_RESULT_KEYS = {"created": "created", "updated": "updated", "unchanged": "unchanged",
                   "skipped": "exists", "failed": "failed"}
OCL_EMPTY_KEYS = ("invalid", "deleted", "not_found", "exception", "permission_denied", "others",
                  "unknown")
SUMMARY_KEYS = ("total", "processed", *ACTIONS)


def empty_summary(total: int = 0) -> dict[str, int]:
    """A summary with nothing processed yet, of `total` lines."""
    return dict.fromkeys(SUMMARY_KEYS, 0) | {"total": total}


def summary_of(job: Job) -> dict[str, int]:
    """The job's summary counts as last committed."""
    stored = job.progress.get("summary") or {}
    return dict(empty_summary(job.payload.get("lines", 0)), **stored)


def queue_of(job: Job) -> str:
    """The queue a job is in, as OCL names it."""
    return str(job.queue or DEFAULT_QUEUE)


def runtime_seconds(job: Job) -> float | None:
    """How long the job ran (so far), in seconds; None before it started."""
    started, finished = job.started_on, job.finished_on or job.updated_on
    if not started or not finished:
        return None
    return round(max(0.0, (datetime.strptime(finished, FORMAT)
                           - datetime.strptime(started, FORMAT)).total_seconds()), 4)


def ocl_json_result(job: Job, results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """OCL's `json` result of a finished import: each outcome's lines (line, type, url,
    errors; OCL lists the input records, which termsync does not keep)."""
    summary = summary_of(job)
    result: dict[str, Any] = {"total": summary["total"], "processed": summary["processed"]}
    result.update({key: [] for key in (*OCL_RESULT_KEYS.values(), *OCL_EMPTY_KEYS)})
    for line in results:
        result[OCL_RESULT_KEYS.get(line["action"], "others")].append(
            {"line": line["line"], "type": line.get("type"), "url": line.get("url"),
             "errors": line.get("errors") or []})
    result["elapsed_seconds"] = runtime_seconds(job)
    return result


def ocl_counts(job: Job) -> dict[str, int]:
    """The job's counts under OCL's result keys."""
    summary = summary_of(job)
    counts = {"total": summary["total"], "processed": summary["processed"]}
    counts.update({ocl_key: summary[action] for action, ocl_key in OCL_RESULT_KEYS.items()})
    return counts


def detailed_summary(job: Job) -> str:
    """OCL's one-line summary of an import (its `message`)."""
    counts = ocl_counts(job)
    return (f"Processed: {counts['processed']}/{counts['total']} | Created: {counts['created']} | "
            f"Updated: {counts['updated']} | DELETED: 0 | Existing: {counts['exists']} | "
            f"Permission Denied: 0 | Failed: {counts['failed']} | "
            f"Unchanged (standard checksum): {counts['unchanged']} | "
            f"Time: {runtime_seconds(job) or 0}secs")


def render_task(job: Job) -> dict[str, Any]:
    """An import job as OCL shows a task (GET /tasks/{id}/, /importers/bulk-import/?task=)."""
    payload = job.payload
    done = job.state in (FINISHED, FAILED, CANCELLED)
    return {"id": job.id, "task": job.id, "state": OCL_STATES.get(job.state, job.state),
            "name": TASK_NAME, "queue": queue_of(job), "username": job.owner,
            "created_at": job.created_on, "started_at": job.started_on,
            "finished_at": job.finished_on, "runtime": runtime_seconds(job),
            "summary": ocl_counts(job), "children": [],
            "message": detailed_summary(job) if done else None,
            "report": dict(ocl_counts(job), elapsed_seconds=runtime_seconds(job)) if done else None,
            "error_message": job.error, "traceback": None,
            "retry": max(0, job.attempts - 1),
            "kwargs": {"update_if_exists": payload["update_if_exists"],
                       "format": payload.get("received_as") or payload["format"],
                       "filename": payload.get("filename"), "dry_run": payload["dry_run"]},
            "url": f"/importers/bulk-import/{job.id}/"}


def render_job(job: Job) -> dict[str, Any]:
    """A job as termsync's own view shows it."""
    payload = job.payload
    target = payload.get("target")
    url = f"/importers/bulk-import/{job.id}/"
    return {"id": job.id, "url": url, "state": STATES.get(job.state, job.state),
            "task": job.id, "queue": queue_of(job),
            "summary": summary_of(job), "format": payload.get("received_as") or payload["format"],
            "filename": payload.get("filename"), "size": payload.get("size"),
            "update_if_exists": payload["update_if_exists"], "dry_run": payload["dry_run"],
            "target": (f"/{target['owner_kind']}/{target['owner_id']}/sources/"
                       f"{target['source_id']}/") if target else None,
            "username": job.owner, "created_on": job.created_on,
            "started_on": job.started_on, "finished_on": job.finished_on,
            "error": job.error, "results_url": f"{url}results/",
            "report_url": f"{url}report.csv"}
