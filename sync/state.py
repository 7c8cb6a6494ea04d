"""The subscriber's typed sync state, one per subscription, persisted by the local store."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

logger = logging.getLogger(__name__)

# Key names of states saved before the state was typed (mixed styles), and what they are now.
_LEGACY_KEYS = {"lastUpdated": "last_updated"}
_LEGACY_CURSOR_KEYS = {"next": "next_url"}


@dataclass
class DiffCursor:
    """Where a diff pass stands: saved after every applied page, cleared when the pass ends."""

    next_url: str
    target: str
    version: str | None = None
    version_created: str | None = None
    version_last_updated: str | None = None
    server_checksum: str | None = None
    since: str | None = None
    max_seen: str | None = None
    pages: int = 0
    applied: int = 0
    include_deleted: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffCursor:
        """A cursor from its saved form (unknown keys ignored, legacy names mapped)."""
        return cls(**_known(cls, data, _LEGACY_CURSOR_KEYS))


@dataclass
class SyncState:
    """Everything a subscription remembers between passes."""

    source_url: str | None = None
    mode: str | None = None
    version: str | None = None
    version_url: str | None = None
    version_created: str | None = None
    last_updated: str | None = None
    server_checksum: str | None = None
    export_sha256: str | None = None
    export_verified: bool | None = None
    cursor: DiffCursor | None = None
    last_started: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_result: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    checksum: str | None = None
    checksum_ok: bool | None = None
    last_changeset: str | None = None  # the delta applied last (MongoDB: its commit point)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the cursor nested), as the store saves it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SyncState:
        """A state from its saved form; {} or None is the state before the first sync."""
        values = _known(cls, data or {}, _LEGACY_KEYS)
        cursor = values.get("cursor")
        values["cursor"] = DiffCursor.from_dict(cursor) if isinstance(cursor, dict) else None
        values["counts"] = dict(values.get("counts") or {})
        return cls(**values)

    def forget_position(self) -> None:
        """Drop what ties the state to the server's content (version, lastUpdated, cursor)."""
        self.cursor = None
        self.last_updated = None
        self.version = None
        self.version_url = None
        self.version_created = None


def _known(cls: type, data: dict[str, Any], legacy: dict[str, str]) -> dict[str, Any]:
    """The entries of `data` that are fields of `cls`, legacy key names translated."""
    names = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        key = legacy.get(key, key)
        if key in names:
            values[key] = value
        elif key != "_id":
            logger.debug("ignoring unknown state key %r", key)
    return values
