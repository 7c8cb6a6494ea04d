"""OCL item payloads as the subscriber stores them: timestamps and field variations normalised."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_CANONICAL_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ITEM_TYPES = {"concept": "Concept", "concepts": "Concept", "mapping": "Mapping",
              "mappings": "Mapping"}
_TRUE_STRINGS = {"true", "1", "yes", "y", "t"}


class InvalidItem(ValueError):
    """An item payload the subscriber cannot store (no url, no type)."""


def normalize_timestamp(value: Any) -> str | None:
    """ISO 8601 in any common form (zone-less = UTC) -> `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if _CANONICAL_RE.match(text):
            return text
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            raise InvalidItem(f"timestamp {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def shift_timestamp(value: str, seconds: float) -> str:
    """A canonical timestamp moved by `seconds` (negative moves back)."""
    moment = datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return datetime.fromtimestamp(moment.timestamp() + seconds, UTC) \
        .strftime(TIMESTAMP_FORMAT)


def as_bool(value: Any) -> bool:
    """OCL booleans may come as strings (`"True"`)."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value)


@dataclass(frozen=True)
class ItemRecord:
    """One concept or mapping (or its tombstone) ready to store."""

    url: str
    type: str
    version: str
    updated_on: str
    deleted: bool
    payload: dict[str, Any]


def item_record(payload: dict[str, Any], kind_hint: str | None = None,
                source_url: str | None = None) -> ItemRecord:
    """Normalise an item from an export or a diff page; raise InvalidItem if unusable."""
    kind = payload.get("type") or ITEM_TYPES.get((kind_hint or "").lower())
    if kind not in ("Concept", "Mapping"):
        raise InvalidItem(f"item has no usable type ({kind!r}): {str(payload)[:200]}")
    url = payload.get("url") or payload.get("versioned_object_url")
    if not url and source_url and payload.get("id") is not None:
        collection = "concepts" if kind == "Concept" else "mappings"
        url = f"{source_url.rstrip('/')}/{collection}/{payload['id']}/"
    if not url:
        raise InvalidItem(f"{kind} without url or id: {str(payload)[:200]}")
    updated_on = normalize_timestamp(payload.get("updated_on") or payload.get("updated_at")
                                     or payload.get("version_created_on")
                                     or payload.get("created_on"))
    version = payload.get("version")
    if version in (None, ""):
        version = payload.get("uuid") or ""
    return ItemRecord(url=str(url), type=kind, version=str(version),
                      updated_on=updated_on or "", deleted=as_bool(payload.get("deleted", False)),
                      payload=payload)


def content_checksum_of(payload: Any) -> str | None:
    """`checksums.content` of a version or source payload, if the server publishes one."""
    checksums = payload.get("checksums") if isinstance(payload, dict) else None
    value = checksums.get("content") if isinstance(checksums, dict) else None
    return value if isinstance(value, str) else None


def checksum_term(url: str, version: str) -> int:
    """One live item's share of `checksums.content`."""
    return int.from_bytes(hashlib.sha256(f"{url}\t{version}\n".encode()).digest(), "big")


def content_checksum(pairs: Iterable[tuple[str, str]]) -> str:
    """`checksums.content`: the sum modulo 2**256 of sha256(f"{url}\\t{version}\\n") over live
    items, as 64 hex digits. Order does not matter, so the pairs may come in any order."""
    return shifted_checksum(format(0, "064x"), pairs, ())


def shifted_checksum(checksum: str, added: Iterable[tuple[str, str]],
                     removed: Iterable[tuple[str, str]]) -> str:
    """`checksums.content` with some live items added and some removed: a sum, so what a copy's
    checksum will be after changes is known before they are written."""
    total = int(checksum, 16)
    for url, version in added:
        total += checksum_term(url, version)
    for url, version in removed:
        total -= checksum_term(url, version)
    return format(total % 2**256, "064x")
