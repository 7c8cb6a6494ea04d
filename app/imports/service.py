"""Bulk import jobs: submission with limits, the batched and resumable run, results and reports.

The run wraps the line loader (`app.domain.loader.Loader.load_line`): every line of every format
goes through it. Lines are applied in batches; before a batch the job heartbeats (a cancelled job
stops there), after it the byte offset, line number and summary are committed. Each line's result
is stored (addressed by job and line) right after the line is applied, so a worker that dies
mid-batch leaves at most one applied line without a result. The worker that takes the job over
restarts at the committed offset, keeps the stored results instead of re-applying those lines, and
re-applies the first line without a result; if that line's write had landed, re-applying it gives
`unchanged`, and the time stamps of what it wrote (later than anything the job had accounted for)
restore its original action. The final summary and results equal those of an uninterrupted run.
A dry run keeps its staged writes in memory only, so a dry run taken over starts again from line 1.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice
from typing import Any

import orjson

from ..domain import Domain
from ..domain.accounts import Caller, require_login
from ..domain.errors import Conflict, DomainError, Invalid, NotFound
from ..domain.loader import ACTIONS, LineResult, Loader, Target
from ..jobs import ACTIVE, CANCELLED, FAILED, FINISHED, PENDING, RUNNING, JobContext, JobLost, JobQueue
from ..ops.metrics import IMPORT_LINES
from ..store.base import DuplicateKey
from ..timeutil import FORMAT, now_iso
from .csvformat import row_records
from .formats import JSONL, ZIP, NotAnExport, export_lines, sniff
from .store import UploadStore

logger = logging.getLogger(__name__)

KIND = "bulk_import"
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


class PayloadTooLarge(DomainError):
    """The upload is bigger (in bytes or lines) than this server accepts in one job."""

    status = 413


class TooManyJobs(DomainError):
    """The caller has as many import jobs running as allowed; retry later."""

    status = 429


@dataclass(frozen=True)
class ImportOptions:
    """How a job applies its lines."""

    format: str | None = "jsonl"  # jsonl, csv, zip (an OCL export), or None: sniffed
    update_if_exists: bool = False
    dry_run: bool = False
    target: Target | None = None
    filename: str | None = None
    queue: str | None = None  # a named queue runs its jobs one at a time, in order


@dataclass(frozen=True)
class ImportLimits:
    """Configured limits of one submission and of one caller."""

    max_bytes: int
    max_lines: int
    max_active_jobs: int
    batch_size: int
    max_line_bytes: int = 4 * 1024 * 1024


@dataclass
class Unit:
    """One input record (a JSON line or a CSV row): its line, its OCL lines, where it ends.

    A record that cannot be read at all (bytes that are not UTF-8, a row wider than its header)
    carries the reason in `error` instead; it becomes one failed result.
    """

    line: int
    texts: list[str]
    end_offset: int
    end_line: int
    error: str | None = None


def empty_summary(total: int = 0) -> dict[str, int]:
    return dict.fromkeys(SUMMARY_KEYS, 0) | {"total": total}


class ImportJobs:
    """Bulk import jobs of one app: submit, read, cancel, and the job handler `run`."""

    def __init__(self, domain: Domain, queue: JobQueue, uploads: UploadStore,
                 limits: ImportLimits) -> None:
        self.domain = domain
        self.queue = queue
        self.uploads = uploads
        self.results = domain.store.import_results
        self.limits = limits
        self.keys = domain.store.import_keys

    # --- submission -----------------------------------------------------------------------
    def resolve_target(self, caller: Caller, owner_kind: str, owner_id: str,
                       source_id: str) -> Target:
        """The source that type-less lines go into (404 if the caller cannot see it)."""
        owner = self.domain.accounts.resolve_owner(caller, owner_kind, owner_id)
        self.domain.content.get_source(caller, owner, source_id)
        return Target(owner_kind, owner.id, source_id)

    def earlier_job(self, caller: Caller, idempotency_key: str | None) -> dict[str, Any] | None:
        """The job this caller submitted earlier with the same Idempotency-Key, if any."""
        if not idempotency_key:
            return None
        job_id = self.keys.job_for(_job_key(caller, idempotency_key))
        return self.queue.get(job_id) if job_id else None

    def check_capacity(self, caller: Caller) -> None:
        """429 with Retry-After when the caller already runs as many jobs as allowed."""
        _, active = self.queue.list(kind=KIND, owner=caller.username, states=ACTIVE, limit=1)
        if active >= self.limits.max_active_jobs:
            raise TooManyJobs(
                f"You have {active} import jobs waiting or running (the limit is "
                f"{self.limits.max_active_jobs}); retry when one has finished.",
                headers={"Retry-After": "30"})

    def submit(self, caller: Caller, chunks: Iterable[bytes], options: ImportOptions,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Store the streamed upload and queue its job; a repeated Idempotency-Key returns the earlier job."""
        key = _job_key(caller, idempotency_key) if idempotency_key else None
        if key is not None:
            earlier = self.keys.claim(key)
            if earlier is not None:
                job = self.queue.get(earlier["job"]) if earlier.get("job") else None
                if job is None:  # the first request with this key is still being received
                    raise Conflict("A submission with this Idempotency-Key is still being "
                                   "received; retry shortly.", headers={"Retry-After": "5"})
                return job
        try:
            job = self._submit(caller, chunks, options, key)
        except BaseException:
            if key is not None:
                self.keys.release(key)
            raise
        if key is not None:
            self.keys.bind(key, job["_id"])
        return job

    def _submit(self, caller: Caller, chunks: Iterable[bytes], options: ImportOptions,
                key: str | None) -> dict[str, Any]:
        self.check_capacity(caller)
        upload_id = uuid.uuid4().hex
        counter = _LineCounter(self.limits)
        lines_in, fmt, received = self._prepare(chunks, options.format)
        size = self.uploads.save(upload_id, counter.count(lines_in))
        if size == 0:
            self.uploads.delete(upload_id)
            raise Invalid("The upload is empty: send OCL JSON lines, OCL CSV or an OCL export zip.",
                          errors={"file": ["Empty."]})
        lines = counter.lines - (1 if fmt == "csv" and counter.lines else 0)
        target = options.target
        payload = {"upload": upload_id, "size": size, "lines": lines, "format": fmt,
                   "received_as": received,
                   "filename": options.filename, "update_if_exists": options.update_if_exists,
                   "dry_run": options.dry_run, "username": caller.username,
                   "target": None if target is None else
                   {"owner_kind": target.owner_kind, "owner_id": target.owner_id,
                    "source_id": target.source_id}}
        job = self.queue.submit(KIND, payload, key=key, owner=caller.username, dedupe=False,
                                queue=options.queue)
        self.queue.update(job["_id"], {"progress": {"summary": empty_summary(lines)}})
        return self.queue.get(job["_id"]) or job

    def _prepare(self, chunks: Iterable[bytes],
                 fmt: str | None) -> tuple[Iterator[bytes], str, str]:
        """The upload as the job stores it, its stored format and the format it came in: a body
        whose format nothing said is sniffed; an OCL export zip becomes OCL JSON lines."""
        stream = iter(chunks)
        first = next((chunk for chunk in stream if chunk), b"")
        body = chain([first], stream) if first else iter(())
        received = fmt or sniff(first)
        if received == ZIP:
            return self._export_as_lines(body), JSONL, ZIP
        return body, received, received

    def _export_as_lines(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Spool a zip (its directory is at the end) and read its export.json as OCL lines."""
        with tempfile.TemporaryFile(prefix="termsync-import-") as spool:
            size = 0
            for chunk in chunks:
                size += len(chunk)
                if size > self.limits.max_bytes:
                    raise PayloadTooLarge(
                        f"The upload is larger than {self.limits.max_bytes} bytes, the most one "
                        "import job accepts; split the file.")
                spool.write(chunk)
            spool.seek(0)
            orgs = self.domain.repos.orgs
            try:
                yield from export_lines(spool, lambda org_id: orgs.get(org_id) is not None)
            except NotAnExport as exc:
                raise Invalid(str(exc), errors={"file": [str(exc)]}) from None

    # --- reading --------------------------------------------------------------------------
    def job_or_none(self, caller: Caller, job_id: str) -> dict[str, Any] | None:
        """The import job `job_id` if there is one the caller may see (401 without a token)."""
        require_login(caller)
        job = self.queue.get(job_id)
        if job is None or job.get("kind") != KIND or not (
                caller.is_admin or (caller.username and job.get("owner") == caller.username)):
            return None
        return job

    def list_tasks(self, caller: Caller, *, queue: str | None = None,
                   ocl_states: list[str] | None = None, everyone: bool = False,
                   name: str | None = None, started_since: str | None = None, skip: int = 0,
                   limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Import jobs newest first: the caller's (with `everyone`, an admin sees all), of one
        queue (OCL's "default" is the jobs submitted without one), in some OCL states, whose
        name holds `name` (all are `bulk_import`), started at or after a time."""
        require_login(caller)
        if name and name.strip().lower() not in TASK_NAME:
            return [], 0
        states = None
        if ocl_states is not None:
            wanted = {name.strip().upper() for name in ocl_states}
            states = [state for state, name in OCL_STATES.items() if name in wanted]
        queues: list[str | None] | None = None
        if queue is not None:
            queues = [None, DEFAULT_QUEUE] if queue == DEFAULT_QUEUE else [queue]
        return self.queue.list(kind=KIND,
                               owner=None if everyone and caller.is_admin else caller.username,
                               queues=queues, states=states, started_since=started_since,
                               skip=skip, limit=limit)

    def ocl_json_result(self, job: dict[str, Any]) -> dict[str, Any]:
        """OCL's `json` result of a finished import: each outcome's lines (line, type, url,
        errors; OCL lists the input records, which termsync does not keep)."""
        summary = summary_of(job)
        result: dict[str, Any] = {"total": summary["total"], "processed": summary["processed"]}
        result.update({key: [] for key in (*OCL_RESULT_KEYS.values(), *OCL_EMPTY_KEYS)})
        for line in self.results.iter_all(job["_id"]):
            result[OCL_RESULT_KEYS.get(line["action"], "others")].append(
                {"line": line["line"], "type": line.get("type"), "url": line.get("url"),
                 "errors": line.get("errors") or []})
        result["elapsed_seconds"] = runtime_seconds(job)
        return result

    def get(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """A job its submitter (or an admin) may see; 401 without a token, 404 for anyone else."""
        job = self.job_or_none(caller, job_id)
        if job is None:
            raise NotFound(f"Import job '{job_id}' not found.")
        return job

    def list_jobs(self, caller: Caller, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The caller's jobs, newest first."""
        return self.queue.list(kind=KIND, owner=caller.username, skip=skip, limit=limit)

    def cancel(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """Cancel a waiting or running job; it stops before its next batch."""
        job = self.get(caller, job_id)
        if self.queue.cancel(job_id) and job["state"] == PENDING:
            self.uploads.delete(job["payload"]["upload"])
        return self.get(caller, job_id)

    def result_page(self, caller: Caller, job_id: str, actions: list[str] | None,
                    after: tuple[int, int] | None, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of per-line results in line order, and how many match in all."""
        job = self.get(caller, job_id)
        summary = summary_of(job)
        num_found = sum(summary[action] for action in actions) if actions else summary["processed"]
        return self.results.page(job_id, after, actions, limit), num_found

    def report_rows(self, job: dict[str, Any]) -> Iterator[list[Any]]:
        """The rows of report.csv (header first): line, type, status, url, error."""
        yield ["line", "type", "status", "url", "error"]
        for result in self.results.iter_all(job["_id"]):
            yield [result["line"], result.get("type") or "", result["action"],
                   result.get("url") or "", "; ".join(result.get("errors") or [])]

    # --- the job --------------------------------------------------------------------------
    def run(self, context: JobContext) -> dict[str, Any]:
        """Apply the job's lines in batches, resuming after its last committed batch."""
        job = context.job
        payload = job["payload"]
        progress = dict(job.get("progress") or {})
        resuming = job.get("attempts", 1) > 1 and bool(progress.get("clean_since"))
        if payload["dry_run"] and resuming:
            # Staged writes died with the worker: only a run from line 1 sees what it would.
            self.results.delete_for_job(job["_id"])
            progress, resuming = {}, False
        summary = dict(empty_summary(payload["lines"]), **(progress.get("summary") or {}))
        state = {"offset": progress.get("offset", 0), "line": progress.get("line", 0),
                 "summary": summary, "clean_since": progress.get("clean_since") or now_iso()}
        since = state["clean_since"]
        target = Target(**payload["target"]) if payload.get("target") else None
        loader = Loader(self.domain.content, self._caller(payload["username"]),
                        update_if_exists=payload["update_if_exists"],
                        dry_run=payload["dry_run"], target=target)
        # A worker that died after the last batch may have deleted the upload already.
        units = iter(()) if state["offset"] >= payload["size"] else \
            self._units(payload, state["offset"], state["line"])
        try:
            while True:
                batch = list(islice(units, self.limits.batch_size))
                if not batch:
                    break
                context.heartbeat(state)  # a cancelled job stops here, before the next batch
                # One transaction per batch (SQLite): its writes, results and progress commit
                # together, and a crash part way leaves none of them. A cancel during the batch
                # waits for it (or, on MongoDB, lets it finish): the batch is done and counted.
                with self.domain.store.transaction():
                    counts: Counter[str] = Counter()
                    for unit in batch:
                        for part, text in enumerate(unit.texts):
                            stored = self.results.get(job["_id"], unit.line, part) \
                                if resuming else None
                            if stored is not None:
                                since = max(since, stored["at"])
                                counts[stored["action"]] += 1
                                continue
                            result = loader.load_line(unit.line, text) if unit.error is None \
                                else LineResult(unit.line, None, None, "failed", [unit.error])
                            if resuming:
                                result = self._original_action(result, since, payload["username"])
                                resuming = False
                            try:
                                self.results.add(job["_id"], part,
                                                 dict(result.as_dict(), at=now_iso()))
                            except DuplicateKey:
                                raise JobLost(job["_id"]) from None  # another worker has this job
                            counts[result.action] += 1
                    applied = dict(summary)
                    for action, count in counts.items():
                        applied[action] += count
                        applied["processed"] += count
                    committed = {"offset": batch[-1].end_offset, "line": batch[-1].end_line,
                                 "summary": applied, "clean_since": now_iso()}
                    context.save_progress(committed)
                summary, state = applied, committed
                for action, count in counts.items():
                    IMPORT_LINES.labels(action=action).inc(count)
        except JobLost:
            self._stopped(context, state)
            raise
        except Exception:
            self.uploads.delete(payload["upload"])
            raise
        summary["total"] = summary["processed"]
        context.heartbeat(state)
        self.uploads.delete(payload["upload"])
        return {"summary": summary}

    def _stopped(self, context: JobContext, state: dict[str, Any]) -> None:
        """A cancelled job keeps the progress of the batch it finished; a lost one writes nothing."""
        job = self.queue.get(context.job["_id"])
        if job is not None and job["state"] == CANCELLED and job.get("worker") == context.worker_id:
            self.queue.update(job["_id"], {"progress": state})
            self.uploads.delete(job["payload"]["upload"])

    def _caller(self, username: str) -> Caller:
        """The submitter as they are now (orgs they joined since, or an admin flag lost)."""
        user = self.domain.repos.users.get(username) or {}
        return Caller(username=username, is_admin=bool(user.get("is_admin")),
                      orgs=frozenset(self.domain.repos.orgs.for_member(username)))

    def _original_action(self, result: LineResult, since: str, username: str) -> LineResult:
        """Re-applying a line whose write landed before its worker died gives 'unchanged'.

        If what the line names was written after everything the job had accounted for (`since`),
        that write was this line's: it was created, or updated, by it.
        """
        if result.action != "unchanged" or not result.url:
            return result
        written = self._written(result.type, result.url)
        if written is None or written.get("updated_by") not in (username, None):
            return result
        if (written.get("updated_on") or "") > since:
            action = "created" if (written.get("created_on") or "") > since else "updated"
            return LineResult(result.line, result.type, result.url, action, result.errors)
        return result

    def _written(self, line_type: str | None, url: str) -> dict[str, Any] | None:
        repos = self.domain.repos
        if line_type == "Organization":
            return repos.orgs.get(url.strip("/").split("/")[-1])
        if line_type == "Source":
            return repos.sources.get(url)
        if line_type == "Source Version":
            return repos.versions.get(url)
        return repos.items.current(url)

    def _units(self, payload: dict[str, Any], offset: int, line: int) -> Iterator[Unit]:
        lines = self.uploads.read_lines(payload["upload"], offset)
        if payload["format"] == "csv":
            return self._csv_units(payload["upload"], lines, offset, line)
        return _json_units(lines, line)

    def _csv_units(self, upload_id: str, lines: Iterator[tuple[bytes, int]], offset: int,
                   line: int) -> Iterator[Unit]:
        position = {"offset": offset, "line": line}
        not_utf8: dict[int, str] = {}  # physical line -> why it is not UTF-8

        def decoded(source: Iterator[tuple[bytes, int]]) -> Iterator[str]:
            for raw, end in source:
                position["offset"] = end
                position["line"] += 1
                text, error = _decode(raw, position["line"])
                if error:
                    not_utf8[position["line"]] = error
                yield text

        if offset == 0:
            reader = csv.reader(decoded(lines))
            header = next(reader, None)
        else:  # resuming: read the header again, then go on where the job stopped
            header = next(csv.reader(_decode_first(self.uploads.read_lines(upload_id, 0))), None)
            reader = csv.reader(decoded(lines))
        if not header:
            return
        header = [column.strip() for column in header]
        start = position["line"] + 1
        for row in reader:
            if any(cell.strip() for cell in row):
                bad = [not_utf8[n] for n in range(start, position["line"] + 1) if n in not_utf8]
                extra = [cell for cell in row[len(header):] if cell.strip()]
                if bad:
                    yield Unit(start, [""], position["offset"], position["line"], bad[0])
                elif extra:
                    yield Unit(start, [""], position["offset"], position["line"],
                               f"Row has {len(row)} cells but the header names {len(header)} "
                               "columns; quote cells that hold commas.")
                else:
                    records = row_records(dict(zip(header, row, strict=False)))
                    texts = [orjson.dumps(record).decode() for record in records]
                    yield Unit(start, texts, position["offset"], position["line"])
            not_utf8.clear()
            start = position["line"] + 1


def _decode_first(lines: Iterator[tuple[bytes, int]]) -> Iterator[str]:
    for number, (raw, _) in enumerate(lines, start=1):
        yield raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace")


def _decode(raw: bytes, line: int) -> tuple[str, str | None]:
    """A line as text, and why it is not UTF-8 (None when it is); a BOM on line 1 is dropped."""
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8"), None
    except UnicodeDecodeError as exc:
        return (raw.decode("utf-8", errors="replace"),
                f"Line is not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8.")


def _json_units(lines: Iterator[tuple[bytes, int]], line: int) -> Iterator[Unit]:
    for raw, end in lines:
        line += 1
        if not raw.strip():
            continue
        text, error = _decode(raw, line)
        yield Unit(line, [text], end, line, error)


class _LineCounter:
    """Counts bytes and lines of a streamed upload, stopping it as soon as a limit is passed."""

    def __init__(self, limits: ImportLimits) -> None:
        self.limits = limits
        self.size = 0
        self.lines = 0
        self._open_line = False
        self._line_bytes = 0  # bytes of the line being read so far

    def count(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.limits.max_bytes:
                raise PayloadTooLarge(
                    f"The upload is larger than {self.limits.max_bytes} bytes, the most one "
                    "import job accepts; split the file.")
            self._check_line_length(chunk)
            self.lines += chunk.count(b"\n")
            self._open_line = not chunk.endswith(b"\n")
            if self.lines > self.limits.max_lines:
                raise PayloadTooLarge(
                    f"The upload has more than {self.limits.max_lines} lines, the most one import "
                    "job accepts; split the file.")
            yield chunk
        if self._open_line:
            self.lines += 1

    def _check_line_length(self, chunk: bytes) -> None:
        """Refuse a line longer than the limit: the job holds one line in memory at a time."""
        if self._line_bytes + len(chunk) > self.limits.max_line_bytes:
            length = self._line_bytes
            for index, part in enumerate(chunk.split(b"\n")):
                length = (length if index == 0 else 0) + len(part)
                if length > self.limits.max_line_bytes:
                    raise PayloadTooLarge(
                        f"Line {self.lines + index + 1} is longer than "
                        f"{self.limits.max_line_bytes} bytes, the longest line an import "
                        "accepts (one resource per line).")
        last = chunk.rfind(b"\n")
        self._line_bytes = self._line_bytes + len(chunk) if last < 0 else len(chunk) - last - 1


def _job_key(caller: Caller, idempotency_key: str) -> str:
    return f"{caller.username}\n{idempotency_key}"


def summary_of(job: dict[str, Any]) -> dict[str, int]:
    """The job's summary counts as last committed."""
    stored = (job.get("progress") or {}).get("summary") or {}
    return dict(empty_summary(job["payload"].get("lines", 0)), **stored)


def queue_of(job: dict[str, Any]) -> str:
    """The queue a job is in, as OCL names it."""
    return str(job.get("queue") or DEFAULT_QUEUE)


def runtime_seconds(job: dict[str, Any]) -> float | None:
    """How long the job ran (so far), in seconds; None before it started."""
    started, finished = job.get("started_on"), job.get("finished_on") or job.get("updated_on")
    if not started or not finished:
        return None
    return round(max(0.0, (datetime.strptime(finished, FORMAT)
                           - datetime.strptime(started, FORMAT)).total_seconds()), 4)


def ocl_counts(job: dict[str, Any]) -> dict[str, int]:
    """The job's counts under OCL's result keys."""
    summary = summary_of(job)
    counts = {"total": summary["total"], "processed": summary["processed"]}
    counts.update({ocl_key: summary[action] for action, ocl_key in OCL_RESULT_KEYS.items()})
    return counts


def detailed_summary(job: dict[str, Any]) -> str:
    """OCL's one-line summary of an import (its `message`)."""
    counts = ocl_counts(job)
    return (f"Processed: {counts['processed']}/{counts['total']} | Created: {counts['created']} | "
            f"Updated: {counts['updated']} | DELETED: 0 | Existing: {counts['exists']} | "
            f"Permission Denied: 0 | Failed: {counts['failed']} | "
            f"Unchanged (standard checksum): {counts['unchanged']} | "
            f"Time: {runtime_seconds(job) or 0}secs")


def render_task(job: dict[str, Any]) -> dict[str, Any]:
    """An import job as OCL shows a task (GET /tasks/{id}/, /importers/bulk-import/?task=)."""
    payload = job["payload"]
    done = job["state"] in (FINISHED, FAILED, CANCELLED)
    return {"id": job["_id"], "task": job["_id"], "state": OCL_STATES.get(job["state"], job["state"]),
            "name": TASK_NAME, "queue": queue_of(job), "username": job.get("owner"),
            "created_at": job.get("created_on"), "started_at": job.get("started_on"),
            "finished_at": job.get("finished_on"), "runtime": runtime_seconds(job),
            "summary": ocl_counts(job), "children": [],
            "message": detailed_summary(job) if done else None,
            "report": dict(ocl_counts(job), elapsed_seconds=runtime_seconds(job)) if done else None,
            "error_message": job.get("error"), "traceback": None,
            "retry": max(0, int(job.get("attempts") or 0) - 1),
            "kwargs": {"update_if_exists": payload["update_if_exists"],
                       "format": payload.get("received_as") or payload["format"],
                       "filename": payload.get("filename"), "dry_run": payload["dry_run"]},
            "url": f"/importers/bulk-import/{job['_id']}/"}


def render_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job as termsync's own view shows it."""
    payload = job["payload"]
    target = payload.get("target")
    url = f"/importers/bulk-import/{job['_id']}/"
    return {"id": job["_id"], "url": url, "state": STATES.get(job["state"], job["state"]),
            "task": job["_id"], "queue": queue_of(job),
            "summary": summary_of(job), "format": payload.get("received_as") or payload["format"],
            "filename": payload.get("filename"), "size": payload.get("size"),
            "update_if_exists": payload["update_if_exists"], "dry_run": payload["dry_run"],
            "target": (f"/{target['owner_kind']}/{target['owner_id']}/sources/"
                       f"{target['source_id']}/") if target else None,
            "username": job.get("owner"), "created_on": job.get("created_on"),
            "started_on": job.get("started_on"), "finished_on": job.get("finished_on"),
            "error": job.get("error"), "results_url": f"{url}results/",
            "report_url": f"{url}report.csv"}


def parse_actions(status: str | None) -> list[str] | None:
    """`?status=failed,skipped` as a list of actions (400 for an unknown one)."""
    if not status:
        return None
    actions = [part.strip() for part in status.split(",") if part.strip()]
    unknown = [action for action in actions if action not in ACTIONS]
    if unknown:
        raise Invalid(f"Unknown status {', '.join(unknown)}: expected {', '.join(ACTIONS)}.",
                      errors={"status": [f"One of {', '.join(ACTIONS)}."]})
    return actions or None
