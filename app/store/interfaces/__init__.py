"""The storage interface: one repository per table (SQLite) or collection (MongoDB), a module per
aggregate, and the `Store` that holds them all.

The domain and the features speak only to these interfaces. Documents are plain dicts addressed by
`_id`, in the same shape on both backends, so `termsync db copy` moves them from one to the other
unchanged.
"""

from .accounts import ConsoleSessions, Orgs, Users
from .collections import CollectionEntries, References
from .content import ContentReader, Items, Sources, Versions
from .documents import DocumentRepository
from .store import Store
from .webhooks import WebhookDeliveries, Webhooks
from .work import ExportRecords, Heartbeats, IdempotencyKeys, ImportResults, Jobs, Leases, RateCounters

__all__ = [
    "CollectionEntries", "ConsoleSessions", "ContentReader", "DocumentRepository", "ExportRecords",
    "Heartbeats", "IdempotencyKeys", "ImportResults", "Items", "Jobs", "Leases", "Orgs",
    "RateCounters", "References", "Sources", "Store", "Users", "Versions", "WebhookDeliveries",
    "Webhooks",
]
