"""The bulk-import job: lines applied in batches, resumable after a crash at its last batch.

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

import logging
from collections import Counter
from itertools import islice
from typing import Any

from ..domain import Domain
from ..domain.loader import LineResult, Loader, Target
from ..faults import fault_of
from ..jobs import CANCELLED, JobContext, JobLost, JobQueue
from ..model import Source, Version
from ..ops.metrics import IMPORT_LINES
from ..store import Store
from ..store.base import DuplicateKey
from ..timeutil import now_iso
from .decode import read_units
from .render import empty_summary
from .store import UploadStore

logger = logging.getLogger(__name__)


class ImportRun:
    """The job handler of bulk imports: applies a job's units, resuming where it stopped."""

    def __init__(self, domain: Domain, queue: JobQueue, uploads: UploadStore, store: Store,
                 batch_size: int, max_record: int) -> None:
        self.domain = domain
        self.queue = queue
        self.uploads = uploads
        self.results = store.import_results
        self.store = store  # what its errors mean (a fault, an outage: not the import's)
        self.batch_size = batch_size
        self.max_record = max_record  # bytes of one CSV row (its cells may span lines)

    def run(self, context: JobContext) -> dict[str, Any]:
        """Apply the job's lines in batches, resuming after its last committed batch."""
        job = context.job
        payload = job.payload
        progress = dict(job.progress)
        resuming = job.attempts > 1 and bool(progress.get("clean_since"))
        if payload["dry_run"] and resuming:
            # Staged writes died with the worker: only a run from line 1 sees what it would.
            self.results.delete_for_job(job.id)
            progress, resuming = {}, False
        summary = dict(empty_summary(payload["lines"]), **(progress.get("summary") or {}))
        state = {"offset": progress.get("offset", 0), "line": progress.get("line", 0),
                 "summary": summary, "clean_since": progress.get("clean_since") or now_iso()}
        since = state["clean_since"]
        target = Target(**payload["target"]) if payload.get("target") else None
        # the submitter as they are now (orgs they joined since, or an admin flag lost)
        loader = Loader(self.domain.content, self.domain.accounts.caller_for(payload["username"]),
                        update_if_exists=payload["update_if_exists"],
                        dry_run=payload["dry_run"], target=target)
        # A worker that died after the last batch may have deleted the upload already.
        units = iter(()) if state["offset"] >= payload["size"] else \
            read_units(self.uploads, payload, state["offset"], state["line"], self.max_record)
        try:
            while True:
                batch = list(islice(units, self.batch_size))
                if not batch:
                    break
                context.heartbeat(state)  # a cancelled job stops here, before the next batch
                # One transaction per batch (SQLite): its writes, results and progress commit
                # together, and a crash part way leaves none of them. A cancel during the batch
                # waits for it (or, on MongoDB, lets it finish): the batch is done and counted.
                with self.domain.transaction():
                    counts: Counter[str] = Counter()
                    for unit in batch:
                        for part, text in enumerate(unit.texts):
                            stored = self.results.get(job.id, unit.line, part) \
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
                                self.results.add(job.id, part,
                                                 dict(result.as_dict(), at=now_iso()))
                            except DuplicateKey:
                                raise JobLost(job.id) from None  # another worker has this job
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
        except Exception as exc:
            # a storage fault or an outage of the database is not the import's failure: the
            # job is taken over later (app/jobs.py), and its successor needs the upload
            if fault_of(exc, self.store) is None and not self.store.is_unavailable(exc):
                self.uploads.delete(payload["upload"])
            raise
        summary["total"] = summary["processed"]
        context.heartbeat(state)
        self.uploads.delete(payload["upload"])
        return {"summary": summary}

    def _stopped(self, context: JobContext, state: dict[str, Any]) -> None:
        """A cancelled job keeps the progress of the batch it finished; a lost one writes nothing."""
        job = self.queue.get(context.job.id)
        if job is not None and job.state == CANCELLED and job.worker == context.worker_id:
            self.queue.update(job.id, {"progress": state})
            self.uploads.delete(job.payload["upload"])

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
        content = self.domain.content
        if line_type == "Organization":
            return self.domain.accounts.find_org(url.strip("/").split("/")[-1])
        found: Source | Version | None
        if line_type == "Source":
            found = content.find_repo(url)
        elif line_type == "Source Version":
            found = content.find_version(url)
        else:
            return content.find_item(url)
        return None if found is None else {
            "created_on": found.created_on, "updated_on": found.updated_on,
            "updated_by": found.updated_by}  # the stamps read above
