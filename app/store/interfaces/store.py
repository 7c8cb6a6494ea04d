"""A `Store`: every repository over one database, chosen by DATABASE_URI."""

from __future__ import annotations

from contextlib import AbstractContextManager

from ...faults import StorageFault
from ..files import ExportStorage, UploadStore
from .accounts import ConsoleSessions, Orgs, Users
from .collections import CollectionEntries, References
from .content import Items, Sources, Versions
from .documents import Copied
from .webhooks import WebhookDeliveries, Webhooks
from .work import ExportRecords, Heartbeats, IdempotencyKeys, ImportResults, Jobs, Leases, RateCounters


class Store:
    """Every repository over one database, chosen by DATABASE_URI."""

    kind = "abstract"
    users: Users
    orgs: Orgs
    sources: Sources
    versions: Versions
    items: Items
    jobs: Jobs
    exports: ExportRecords
    import_results: ImportResults
    import_keys: IdempotencyKeys
    leases: Leases
    heartbeats: Heartbeats
    rate_counters: RateCounters
    console_sessions: ConsoleSessions
    references: References
    collection_entries: CollectionEntries
    webhooks: Webhooks
    webhook_deliveries: WebhookDeliveries

    def ensure_schema(self) -> None:
        """Create or upgrade tables/collections and their indexes (idempotent)."""
        raise NotImplementedError

    def transaction(self, source_url: str | None = None) -> AbstractContextManager[None]:
        """A unit of work: on SQLite one transaction (inside a transaction, a savepoint; inside
        a unit, part of that unit), on MongoDB the process-wide lock of `source_url` (single
        documents are atomic there). Code inside a unit does not catch an exception that leaves
        a unit nested in it: it leaves both."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise if the database does not answer."""
        raise NotImplementedError

    def is_unavailable(self, error: BaseException) -> bool:
        """Whether `error` means the database is down or busy (503), not a bug (500)."""
        raise NotImplementedError

    def fault_of(self, error: BaseException) -> StorageFault | None:
        """The storage fault a database error means (its disk full, read-only, not writable by
        this user: 503 and a degraded /readyz), or None."""
        return None

    def writable_path(self) -> str | None:
        """The file whose directory must stay writable (SQLite), or None (a server's)."""
        return None

    def close(self) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        """Delete everything (tests on a shared server)."""
        raise NotImplementedError

    def export_files(self, bucket: str, temp_directory: str) -> ExportStorage:
        """Export files kept in this database (GridFS's layout in `bucket` on MongoDB), so that
        every host serves them; builds write their temp files under `temp_directory`. ValueError
        where the database keeps no files (configuration refuses that before)."""
        raise ValueError(f"the {self.kind} store keeps no export files; use a directory")

    def import_uploads(self) -> UploadStore:
        """Bulk-import uploads kept in this database (chunks on MongoDB), so that a job runs on
        any host; ValueError where the database keeps no files."""
        raise ValueError(f"the {self.kind} store keeps no uploads; use a directory")

    def repositories(self) -> dict[str, Copied]:
        """The repositories `termsync db copy` moves, in the order they must be loaded."""
        return {"users": self.users, "orgs": self.orgs, "sources": self.sources,
                "versions": self.versions, "items": self.items,
                "references": self.references, "collection_entries": self.collection_entries,
                "jobs": self.jobs, "import_results": self.import_results,
                "webhooks": self.webhooks, "webhook_deliveries": self.webhook_deliveries}
