"""Export state machine: content stamps, queueing builds, the build job, deletion and GC.

An export is identified by its version's url (HEAD: the source url + 'HEAD/'). Its record (the
store's `exports` repository) holds the committed file (sha256, size, lastUpdated, the content stamp it
was built from) and the id of the latest build job. What a request sees is decided at serve time:

- READY: the record's file was built from the current content stamp;
- PENDING / BUILDING: the latest build job is active;
- FAILED: the latest build job failed for the current stamp (a later GET retries after
  EXPORT_FAILED_RETRY_SECONDS; a POST retries at once);
- NONE: anything else. A stale file (its stamp differs) is treated as none and collected later.

The stamp of a version is the export format's number (an upgrade that changes what an export
holds makes older files stale), its seq (its content, immutable), its metadata's `updated_on` and
its source's `updated_on` (the export repeats the source's fields); of HEAD, the source's live seq
and `updated_on`. Listeners only speed things up; the stamp check alone makes serving correct.

GET never builds (OCL clients answer a 204 with a POST, the OpenMRS module never POSTs), so a
released version always has a current export: releasing queues it, and so do a source change
that makes it stale, startup and garbage collection (`ensure_released_exports`).

A record is not its file: a new disk, a restore or an `rm` can take the file away. What GET, HEAD
and POST answer (`current`) looks the file up in storage first (its size, one stat); startup
does the same for every released version, and garbage collection also hashes the bytes. A file
that is gone, truncated or corrupt is lost: its record drops it and the export is rebuilt, so
nothing answers 200 (or 303) for it.

A delta package (`{version}export/?since={base}`, `delta.py`) is an export of a version with a
`base`: its key and stamp name both versions, and everything above holds for it too; releasing
a version also queues its delta from the release before it, and a version unreleased or deleted
drops the deltas that start or end at it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app

from ..config import ExportSettings
from ..domain import Domain, ocl
from ..domain.content import is_collection
from ..domain.errors import NotFound
from ..faults import EXPORTS, storage_boundary
from ..jobs import ACTIVE, FAILED, PENDING, JobContext, JobLost, JobQueue
from ..model import CONCEPT, MAPPING, ContentQuery, ExportFile, ExportRecord, Job, Source, Version
from ..store.interfaces import ExportRecords
from ..timeutil import format_time
from .builder import ZipTooLarge, build_export, export_header, temp_path
from .delta import DELTA_FORMAT, manifest_entry, plan_delta
from .storage import SHA256_HEX, ExportStorage

logger = logging.getLogger(__name__)

JOB_KIND = "export"
EXTENSION = "termsync.exports"
READY, BUILDING, NONE = "READY", "BUILDING", "NONE"
HASH_BLOCK = 1024 * 1024


@dataclass
class ExportStatus:
    """What an export is right now, for one version at its current content stamp."""

    state: str  # READY | PENDING | BUILDING | FAILED | NONE
    key: str
    stamp: str
    file: ExportFile | None = None
    job: Job | None = None
    requeued: bool = False  # its file was lost and this request queued the rebuild

    @property
    def progress(self) -> int:
        """Percent of items written by the running build (0 while pending)."""
        if self.job is None:
            return 0
        progress = self.job.progress
        total = int(progress.get("total") or 0)
        if total <= 0:
            return 0
        return max(0, min(99, int(100 * int(progress.get("done") or 0) / total)))

    @property
    def error(self) -> str | None:
        return self.job.error if self.job else None


@dataclass
class PurgeReport:
    """What one garbage collection removed."""

    records: int = 0
    stale_files: int = 0
    lost_files: int = 0  # missing, truncated or corrupt: dropped from their records, rebuilt
    files: int = 0
    temp_files: int = 0


def export_key(source: Source, version: Version,
               base: Version | None = None) -> str:
    """The identity of an export: its version url (HEAD: the source url + 'HEAD/'; a delta
    package from `base`: the version url + 'since/{base id}/')."""
    if base is not None:
        return f"{version.url}since/{base.id}/"
    if version.is_head:
        return f"{source.url}HEAD/"
    return version.url


# What export.json holds; raise it when that changes, so that older files are rebuilt.
# 2: uuids on names and descriptions, server-unique item uuids, no zip64 records below 4 GiB.
EXPORT_FORMAT = 2


def content_stamp(source: Source, version: Version,
                  base: Version | None = None) -> str:
    """What must not change for an export to stay valid (see the module docstring); a delta's
    names both versions (unreleasing one changes its `updated_on`)."""
    if base is not None:
        return (f"delta:{EXPORT_FORMAT}.{DELTA_FORMAT}:{base.seq}:{base.updated_on}:"
                f"{version.seq}:{version.updated_on}:{source.updated_on}")
    if version.is_head:
        return f"head:{EXPORT_FORMAT}:{source.seq}:{source.updated_on}"
    return (f"version:{EXPORT_FORMAT}:{version.seq}:{version.updated_on}:"
            f"{source.updated_on}")


class ExportService:
    """Everything about exports that is not HTTP: state, queueing, building, deleting, GC."""

    def __init__(self, domain: Domain, queue: JobQueue, storage: ExportStorage,
                 records: ExportRecords, settings: ExportSettings,
                 wake: Callable[[], None] | None = None) -> None:
        self.domain = domain
        self.queue = queue
        self.storage = storage
        self.records = records
        self.settings = settings
        self.wake = wake or (lambda: None)
        # called with (source, version, file) when a build commits its file (webhooks)
        self.ready_listeners: list[Callable[[Source, Version, ExportFile],
                                            None]] = []

    # --- state ----------------------------------------------------------------------------
    def status(self, source: Source, version: Version,
               base: Version | None = None) -> ExportStatus:
        """The export's state at the current content stamp; reads, never queues."""
        key = export_key(source, version, base)
        stamp = content_stamp(source, version, base)
        record = self.records.get(key)
        if record is None:
            return ExportStatus(NONE, key, stamp)
        if record.file is not None and record.file.stamp == stamp:
            return ExportStatus(READY, key, stamp, file=record.file)
        job = self.queue.get(record.job_id)
        if job is not None and job.state in ACTIVE:
            state = PENDING if job.state == PENDING else BUILDING
            return ExportStatus(state, key, stamp, job=job)
        if job is not None and job.state == FAILED and job.payload.get("stamp") == stamp:
            return ExportStatus(FAILED, key, stamp, job=job)
        return ExportStatus(NONE, key, stamp)

    def current(self, source: Source, version: Version,
                base: Version | None = None) -> ExportStatus:
        """The state GET, HEAD and POST answer with: `status`, with a READY file looked up in
        storage (one stat, or one GridFS files lookup). A file that is gone or whose size is
        not its record's is lost: the export is queued again and the answer is that build's."""
        status = self.status(source, version, base)
        if status.state == READY and status.file is not None:
            problem = self.file_problem(status.file)
            if problem is not None:
                return self.file_lost(source, version, status.file.sha256, problem, base)
        return status

    def file_problem(self, file: ExportFile, deep: bool = False) -> str | None:
        """What is wrong with a record's file in storage (None: nothing): absent, another size
        than recorded, or (`deep`: its bytes are read and hashed) another sha256."""
        sha = file.sha256
        stored = self.storage.stat(sha)
        if stored is None:
            return f"is missing from {self.storage.name} storage"
        if stored.size != file.size:
            return f"has {stored.size} bytes in {self.storage.name} storage, not {file.size}"
        if not deep:
            return None
        digest = hashlib.sha256()
        try:
            with self.storage.open(sha) as handle:
                while block := handle.read(HASH_BLOCK):
                    digest.update(block)
        except OSError as exc:
            return f"cannot be read from {self.storage.name} storage ({exc})"
        if digest.hexdigest() != sha:
            return f"does not match its sha256 in {self.storage.name} storage (corrupt)"
        return None

    def _failure_expired(self, job: Job) -> bool:
        retry = self.settings.failed_retry_seconds
        finished = job.finished_on or job.updated_on
        cutoff = format_time(self.queue.clock() - timedelta(seconds=retry))
        return finished is not None and str(finished) <= cutoff

    def request(self, source: Source, version: Version,
                rebuild: bool = False, base: Version | None = None) -> ExportStatus:
        """GET (rebuild=False) or POST (rebuild=True): queue a build unless one is due already."""
        status = self.status(source, version, base)
        if status.state in (PENDING, BUILDING):
            if status.job and status.job.payload.get("stamp") == status.stamp:
                return status  # a second request joins the running build
            if status.job:
                self.queue.cancel(status.job.id)  # building stale content: start afresh
        elif not rebuild:
            if status.state == READY:
                return status
            if status.state == FAILED and status.job and not self._failure_expired(status.job):
                return status
        return self.submit(source, version, status.stamp, base)

    def submit(self, source: Source, version: Version, stamp: str,
               base: Version | None = None) -> ExportStatus:
        """Queue a build of this export (an active build of the same export is returned)."""
        key = export_key(source, version, base)
        since_id = base.id if base is not None else None
        payload = {"source_url": source.url, "version_id": version.id, "key": key,
                   "stamp": stamp, "since_id": since_id}
        job = self.queue.submit(JOB_KIND, payload, key=key)
        self.records.set_job(key, job.id, source=source.url, version_id=version.id,
                             since_id=since_id)
        self.wake()
        state = PENDING if job.state == PENDING else BUILDING
        return ExportStatus(state, key, stamp, job=job)

    def delete(self, source: Source, version: Version,
               base: Version | None = None) -> bool:
        """DELETE: remove the file and/or cancel the build; False if there was nothing."""
        status = self.status(source, version, base)
        record = self.records.get(status.key)
        if record is None:
            return False
        found = status.state != NONE
        self.queue.cancel(record.job_id)
        self.records.delete(status.key)
        if record.file is not None:
            self._delete_if_unreferenced(record.file.sha256)
        return found

    def file_lost(self, source: Source, version: Version, sha256: str,
                  problem: str = "is missing from storage",
                  base: Version | None = None) -> ExportStatus:
        """The record's file is gone (or truncated, or corrupt): drop it and queue a rebuild."""
        key = export_key(source, version, base)
        logger.warning("export %s: file %s %s; rebuilding", key, sha256, problem)
        self.records.drop_file_if(key, sha256)
        status = self.request(source, version, base=base)
        status.requeued = True
        return status

    def forget(self, key: str) -> None:
        """Drop an export whose version or source is gone: cancel its build, delete its file."""
        record = self.records.get(key)
        if record is None:
            return
        self.queue.cancel(record.job_id)
        self.records.delete(key)
        if record.file is not None:
            self._delete_if_unreferenced(record.file.sha256)

    def _delete_if_unreferenced(self, sha256: str) -> None:
        if not self.records.referenced(sha256):
            self.storage.delete(sha256)

    def file_record(self, source: Source, sha256: str) -> ExportRecord | None:
        """The record of this source holding the file `sha256` (fresh or stale), if any."""
        if not SHA256_HEX.match(sha256):
            return None
        return self.records.by_file(source.url, sha256)

    # --- building -------------------------------------------------------------------------
    def build(self, context: JobContext) -> dict[str, Any] | None:
        """The `export` job: stream the zip to a temp file, commit it, record it."""
        payload = context.job.payload
        content = self.domain.content
        source = content.find_repo(payload["source_url"])
        if source is None:
            return {"skipped": "source deleted"}
        try:
            version = content.get_version(source, payload["version_id"])
            base = content.get_version(source, payload["since_id"]) \
                if payload.get("since_id") else None
        except NotFound:
            return {"skipped": "version deleted"}
        key = export_key(source, version, base)
        stamp = content_stamp(source, version, base)  # of the very documents the header renders
        if version.is_head:
            fields = ocl.render_source(source, content.checksum(source, version))
        else:
            fields = ocl.render_version(version, source, content.checksum(source, version))
        last_updated = version.last_updated
        if not last_updated:
            newest = content.last_item(source, version)
            last_updated = newest["updated_on"] if newest else None
        created_on = format_time(datetime.now(UTC))
        header = export_header(fields, last_updated, created_on)
        if base is None:
            total = content.count(source, version,
                                  ContentQuery(source.url, version.seq, (CONCEPT, MAPPING)))
        else:
            total = content.reader(source).count_changed(source.url, base.seq,
                                                         version.seq)
        context.heartbeat({"done": 0, "total": total})
        with storage_boundary(EXPORTS):  # a full disk fails the build, to be retried (app/jobs.py)
            path = temp_path(self.storage.temp_dir())
        try:
            stats = None
            # Without zip64 records first (Java's ZipInputStream misreads them); only a file past
            # 4 GiB needs them, and that one is built again with them.
            for zip64 in (False, True):
                try:
                    sections, extra_entries = self._sections(source, version, base, created_on)
                    with storage_boundary(EXPORTS):
                        stats = build_export(
                            path, header, source, sections,
                            progress=lambda done: context.heartbeat({"done": done,
                                                                     "total": total}),
                            progress_every=self.settings.heartbeat_items,
                            compresslevel=self.settings.compresslevel,
                            zip64=zip64, render=content.renderer(source),
                            extra_entries=extra_entries)
                    break
                except ZipTooLarge:
                    logger.info("export %s passes 4 GiB: building it again with zip64", key)
            assert stats is not None
            context.heartbeat({"done": total, "total": total})  # still ours? then commit
            self.storage.put(path, stats.sha256)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        file = ExportFile(sha256=stats.sha256, size=stats.size, created_on=created_on,
                          last_updated=last_updated, stamp=stamp, storage=self.storage.name,
                          concepts=stats.concepts, mappings=stats.mappings)
        if not self.records.commit_file(key, context.job.id, file):
            # DELETE (or a newer request) replaced this build while it ran: discard the file
            self._delete_if_unreferenced(stats.sha256)
            raise JobLost(context.job.id)
        logger.debug("export %s built: %d concepts, %d mappings, %d bytes in %.1fs", key,
                    stats.concepts, stats.mappings, stats.size, stats.seconds_total)
        for listener in self.ready_listeners if base is None else ():  # export.ready: exports
            try:
                listener(source, version, file)
            except Exception:  # a listener never fails a build that is committed
                logger.exception("export %s: a ready listener failed", key)
        return {"sha256": stats.sha256, "size": stats.size, "concepts": stats.concepts,
                "mappings": stats.mappings}

    def _sections(self, source: Source, version: Version,
                  base: Version | None, created_on: str,
                  ) -> tuple[list[tuple[str, Any]], Callable[[], dict[str, bytes]] | None]:
        """What export.json holds, read lazily (and, for a delta, its manifest entry)."""
        content = self.domain.content
        if base is not None:
            plan = plan_delta(self.domain, source, base, version, created_on)
            return plan.sections, manifest_entry(plan)
        sections: list[tuple[str, Any]] = [
            ("concepts", content.iter_content(source, version, CONCEPT)),
            ("mappings", content.iter_content(source, version, MAPPING))]
        if is_collection(source):
            sections.append(("references", (ocl.render_reference(reference) for reference in
                                            content.collections.iter_references(
                                                source, version))))
        return sections, None

    # --- events ---------------------------------------------------------------------------
    def on_content_event(self, event: str, source: Source,
                         version: Version | None) -> None:
        """Content listener: queue exports of released versions, drop those of deleted ones."""
        if event in ("version_created", "version_changed") and version is not None:
            if not version.released:
                self._forget_deltas(source, version)  # deltas are between released versions
            elif self.settings.on_release:
                fresh = self.domain.content.find_repo(source.url) or source
                self.request(fresh, version)
                previous = self._previous_release(fresh, version)
                if previous is not None:  # one download for subscribers of the last release
                    self.request(fresh, version, base=previous)
        elif event == "source_changed":
            # the source's fields are in every export of it: released ones are rebuilt now
            if self.settings.on_release:
                for released in self.domain.content.released_versions(source):
                    self.request(source, released)
        elif event == "version_deleted" and version is not None:
            self.forget(export_key(source, version))
            self._forget_deltas(source, version)
        elif event == "source_deleted":
            for record in self.records.for_source(source.url):
                self.forget(record.key)

    def _forget_deltas(self, source: Source, version: Version) -> None:
        """Drop the delta packages that start or end at a version (unreleased or deleted)."""
        for record in self.records.for_source(source.url):
            if record.since_id and version.id in (record.since_id, record.version_id):
                self.forget(record.key)

    def _previous_release(self, source: Source,
                          version: Version) -> Version | None:
        """The released version created last before `version`, if any."""
        for released in self.domain.content.released_versions(source):
            if released.created_on < version.created_on:
                return released
        return None

    def ensure_released_exports(self) -> int:
        """Queue a build for every released version without a current export (a failed one
        after EXPORT_FAILED_RETRY_SECONDS); returns how many were queued.

        Run at startup and after garbage collection: GET never builds, so this (with the
        listeners) is what keeps released versions downloadable.
        """
        if not self.settings.on_release:
            return 0
        queued = 0
        sources: dict[str, Source | None] = {}
        for version in self.domain.content.every_released_version():
            if version.source not in sources:
                sources[version.source] = self.domain.content.find_repo(version.source)
            source = sources[version.source]
            if source is None:
                continue
            status = self.status(source, version)
            if status.state == READY and status.file is not None:
                problem = self.file_problem(status.file)
                if problem is not None:  # a new disk, a restore, someone's rm
                    self.file_lost(source, version, status.file.sha256, problem)
                    queued += 1
                continue
            expired = status.state == FAILED and status.job is not None \
                and self._failure_expired(status.job)
            if status.state == NONE or expired:
                self.submit(source, version, status.stamp)
                queued += 1
        if queued:
            logger.info("queued %d export builds of released versions without a current export",
                        queued)
        return queued

    # --- garbage collection and listing ----------------------------------------------------
    def _current(self, record: ExportRecord
                 ) -> tuple[Source, Version, Version | None] | None:
        """The (source, version, delta base or None) a record belongs to, or None if any is
        gone (or, for a delta, no longer released)."""
        source = self.domain.content.find_repo(record.source)
        if source is None:
            return None
        try:
            version = self.domain.content.get_version(source, record.version_id)
            if not record.since_id:
                return source, version, None
            base = self.domain.content.get_version(source, record.since_id)
        except NotFound:
            return None
        if not (version.released and base.released):
            return None
        return source, version, base

    def purge(self, grace_seconds: float | None = None) -> PurgeReport:
        """Collect garbage: records of deleted versions, stale files, orphaned and temp files;
        and check every current file in storage (its size, and its bytes against its sha256):
        one that is missing, truncated or corrupt is rebuilt.

        Files newer than the grace period are kept: a build commits its file a moment before
        its record, and a client may still be downloading a file that was just replaced.
        """
        if grace_seconds is None:
            grace_seconds = self.settings.gc_grace_seconds
        report = PurgeReport()
        for record in list(self.records.all()):
            current = self._current(record)
            if current is None:
                self.forget(record.key)
                report.records += 1
                continue
            file = record.file
            if file is not None and file.stamp != content_stamp(*current):
                if self.records.drop_file_if(record.key, file.sha256):
                    report.stale_files += 1
            elif file is not None:
                problem = self.file_problem(file, deep=True)
                if problem is not None:
                    self.file_lost(current[0], current[1], file.sha256, problem, current[2])
                    report.lost_files += 1
        referenced = self.records.shas()
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        for stored in list(self.storage.list()):
            if stored.sha256 not in referenced and stored.stored_on <= cutoff:
                self.storage.delete(stored.sha256)
                report.files += 1
        for path in list(self.storage.stale_temp_files(cutoff)):
            try:
                os.unlink(path)
                report.temp_files += 1
            except FileNotFoundError:
                pass
        if report.records or report.files or report.stale_files or report.temp_files \
                or report.lost_files:
            logger.info("export GC: %s", report)
        self.ensure_released_exports()
        return report

    def listing(self) -> list[dict[str, Any]]:
        """Every export with its state (the CLI's `exports list`)."""
        rows: list[dict[str, Any]] = []
        for record in self.records.all():
            current = self._current(record)
            if current is None:
                rows.append({"export": record.key, "state": "ORPHANED"})
                continue
            status = self.status(*current)
            file = record.file
            rows.append({"export": record.key, "state": status.state,
                         "stale_file": file is not None and status.state != READY,
                         "sha256": file.sha256 if file else None,
                         "size": file.size if file else None,
                         "created_on": file.created_on if file else None,
                         "lastUpdated": file.last_updated if file else None,
                         "progress": status.progress, "error": status.error})
        return rows

    def rebuild(self, export: str) -> ExportStatus:
        """Queue a rebuild of one export named by its version url (HEAD: source url + HEAD/) or
        by its key (`exports list`: a delta's is its version url + since/{base}/)."""
        record = self.records.get(export)
        current = self._current(record) if record is not None else None
        if current is not None:
            return self.request(current[0], current[1], rebuild=True, base=current[2])
        source_url, version_id = export.rstrip("/").rsplit("/", 1)
        source = self.domain.content.find_repo(source_url + "/")
        if source is None:
            raise NotFound(f"Source {source_url}/ not found.")
        version = self.domain.content.get_version(source, version_id)
        return self.request(source, version, rebuild=True)


def export_service(app: Flask | None = None) -> ExportService:
    """The export service of an app (the current one by default)."""
    service: ExportService = (app or current_app).extensions[EXTENSION]
    return service
