"""Bulk imports: the upload form (OCL JSON lines or CSV, dry run, update if exists), the caller's
jobs, and a job's page with live progress, its summary, its per-line results filtered by status
and its report.csv."""

from __future__ import annotations

import csv
import io
import logging
import secrets
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request, url_for

from ..domain.errors import Invalid
from ..domain.loader import ACTIONS
from ..imports.render import STATES, render_job, summary_of
from ..imports.service import ImportJobs, ImportOptions, parse_actions
from ..jobs import ACTIVE
from ..model import Job
from .web import Answer, page_number, pager, render, require_sign_in, services

logger = logging.getLogger(__name__)

bp = Blueprint("imports", __name__)

READ_SIZE = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the form's other fields around the file
RESULTS_PER_PAGE = 100
# What the import service reads; an OCL export zip is refused with a reason until it reads them.
FORMATS = {"jsonl": "OCL JSON lines", "csv": "OCL CSV"}
STATUS_CHOICES = ("failed", "skipped", "created", "updated", "unchanged", "all")


def import_jobs() -> ImportJobs:
    """The bulk-import service of the running app."""
    return current_app.extensions["termsync.imports"]


def upload_limit() -> int:
    """The largest request body the upload form may send (the import limit and the form)."""
    return import_jobs().limits.max_bytes + MULTIPART_OVERHEAD


def progress_of(job: Job) -> dict[str, Any]:
    """What the page's script needs to show a job's progress: lines processed of all."""
    summary = summary_of(job)
    state = STATES.get(job.state, job.state)
    total = max(summary["total"], summary["processed"])
    return {"state": state, "label": state.lower(),
            "detail": f"{summary['processed']:,} of {total:,} lines",
            "value": summary["processed"], "max": max(total, 1), "summary": summary,
            "final": job.state not in ACTIVE}


def _chunks(stream: Any) -> Iterator[bytes]:
    try:
        while True:
            chunk = stream.read(READ_SIZE)
            if not chunk:
                return
            yield chunk
    finally:
        stream.close()


def _format(filename: str, mimetype: str, chosen: str) -> str:
    """The upload's format: as chosen, else from its name or type (.zip is refused)."""
    if chosen in FORMATS:
        return chosen
    if filename.lower().endswith(".zip") or mimetype in ("application/zip",
                                                         "application/x-zip-compressed"):
        raise Invalid("This server's bulk import reads OCL JSON lines and OCL CSV; an OCL "
                      "export zip is not accepted yet.", errors={"file": ["A zip."]})
    return "csv" if filename.lower().endswith(".csv") or mimetype == "text/csv" else "jsonl"


def _submit(caller: Any) -> Answer:
    service = import_jobs()
    form = request.form
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid("Choose a file to upload.", errors={"file": ["Missing."]})
    target = None
    owner, source = form.get("owner", "").strip(), form.get("source", "").strip()
    if owner or source:
        if not (owner and source):
            raise Invalid("Name the target source with both its owner and its id.",
                          errors={"source": ["owner and source go together."]})
        kind = "users" if form.get("owner_type") == "User" else "orgs"
        target = service.resolve_target(caller, kind, owner, source)
    options = ImportOptions(format=_format(upload.filename, upload.mimetype or "",
                                           form.get("format", "")),
                            update_if_exists=form.get("update_if_exists") == "on",
                            dry_run=form.get("dry_run") == "on", target=target,
                            filename=upload.filename)
    # The form's one-time submission id is the Idempotency-Key: submitting twice is one job.
    job = service.submit(caller, _chunks(upload.stream), options,
                         form.get("submission") or None)
    current_app.extensions["termsync.jobs"].wake()
    return redirect(url_for("console.imports.job", job_id=job.id), 303)


@bp.route("/imports/", methods=["GET", "POST"])
def jobs() -> Answer:
    """GET: the upload form and the caller's jobs; POST: submit an upload."""
    caller = require_sign_in()
    if request.method == "POST":
        return _submit(caller)
    page, limit = page_number(), services().settings.page_size
    found, total = import_jobs().list_jobs(caller, (page - 1) * limit, limit)
    rows = [dict(render_job(job), progress=progress_of(job)) for job in found]
    return render("console/imports.html", jobs=rows, pager=pager(page, limit, total),
                  formats=FORMATS, submission=secrets.token_urlsafe(16),
                  refresh=any(not row["progress"]["final"] for row in rows))


@bp.route("/imports/<job_id>/")
def job(job_id: str) -> Answer:
    """A job: state, live progress, summary, and its per-line results filtered by status."""
    caller = require_sign_in()
    service = import_jobs()
    found = service.get(caller, job_id)
    status = request.args.get("status") or "failed"
    if status not in STATUS_CHOICES:
        status = "failed"
    actions = None if status == "all" else parse_actions(status)
    after = None
    if request.args.get("after"):
        line, _, part = request.args["after"].partition(":")
        if line.isdigit() and (not part or part.isdigit()):
            after = (int(line), int(part or 0))
    results, num_found = service.result_page(caller, job_id, actions, after,
                                             RESULTS_PER_PAGE + 1)
    next_url = None
    if len(results) > RESULTS_PER_PAGE:
        results = results[:RESULTS_PER_PAGE]
        last = results[-1]
        next_url = url_for(".job", job_id=job_id, status=status,
                           after=f"{last['line']}:{last.get('part', 0)}")
    progress = progress_of(found)
    return render("console/import_job.html", job=render_job(found), progress=progress,
                  results=results, num_found=num_found, status=status,
                  statuses=STATUS_CHOICES, actions=ACTIONS, next_url=next_url,
                  first_url=url_for(".job", job_id=job_id, status=status) if after else None,
                  refresh=not progress["final"])


@bp.route("/imports/<job_id>/progress.json")
def job_progress(job_id: str) -> Answer:
    """A job's state and progress, for the page's progress bar."""
    caller = require_sign_in()
    return jsonify(progress_of(import_jobs().get(caller, job_id)))


@bp.route("/imports/<job_id>/cancel", methods=["POST"])
def cancel(job_id: str) -> Answer:
    """Cancel a waiting or running job (it stops before its next batch)."""
    caller = require_sign_in()
    import_jobs().cancel(caller, job_id)
    return redirect(url_for(".job", job_id=job_id), 303)


@bp.route("/imports/<job_id>/report.csv")
def report(job_id: str) -> Answer:
    """The job's report: line, type, status, url and error of every line."""
    caller = require_sign_in()
    service = import_jobs()
    found = service.get(caller, job_id)
    rows = service.report_rows(found)

    def stream() -> Iterator[str]:
        """The CSV a block of rows at a time."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for row in rows:
            writer.writerow(row)
            if buffer.tell() > READ_SIZE:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="import_{found.id}_report.csv"',
        "Cache-Control": "private, no-cache"})
