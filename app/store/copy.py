"""`termsync db copy FROM TO`: stream every document from one backend to another.

Used when a deployment outgrows one machine (SQLite to MongoDB) or comes back. Everything that
is content or history moves: users and tokens, orgs, sources and collections, versions, every item
version and tombstone (so version cuts stay exact and diffs go on), mapping keys, the references
and entries of collections, jobs and import results.
Export files and their records do not: the target rebuilds exports of released versions at its
first start. Leases, heartbeats and rate counters are transient and start afresh.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ..model import COLLECTION_TYPE, Document
from .interfaces import Store

logger = logging.getLogger(__name__)


def _counted(documents: Iterator[Document], tick: Callable[[], None]) -> Iterator[Document]:
    for document in documents:
        tick()
        yield document


class Progress:
    """A one-line progress report on a terminal (a line per repository elsewhere)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.name = ""
        self.count = 0

    def start(self, name: str) -> None:
        self.name, self.count = name, 0

    def tick(self) -> None:
        self.count += 1
        if self.tty and self.count % 1000 == 0:
            self.stream.write(f"\r{self.name}: {self.count:,} copied")
            self.stream.flush()

    def done(self) -> None:
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.name}: {self.count:,} copied\n")
        self.stream.flush()


def copy_store(source: Store, target: Store, progress: Progress | None = None) -> dict[str, Any]:
    """Copy every repository of `source` into `target` (its schema created first)."""
    progress = progress or Progress()
    target.ensure_schema()
    counts: dict[str, int] = {}
    for name, repository in source.repositories().items():
        progress.start(name)
        counts[name] = getattr(target, name).load(_counted(repository.dump(), progress.tick))
        progress.done()
    target.items.recompute_checksums()
    target.collection_entries.recompute_checksums()
    return {"copied": counts, "checksums": compare_checksums(source, target)}


def compare_checksums(source: Store, target: Store) -> dict[str, int]:
    """Every repository's HEAD and every version: `checksums.content` equal on both sides?"""
    equal = different = 0
    for source_doc in source.sources.dump():
        url = source_doc["_id"]
        collection = source_doc.get("repo_type") == COLLECTION_TYPE
        before = source.collection_entries if collection else source.items
        after = target.collection_entries if collection else target.items
        pairs = [(before.head_checksum(url), after.head_checksum(url))]
        versions, _ = source.versions.list(url, None, 0, 0)
        for version in versions:
            expected = version.checksum or before.scan_checksum(url, version.seq)
            pairs.append((expected, after.scan_checksum(url, version.seq)))
        for left, right in pairs:
            if left == right:
                equal += 1
            else:
                different += 1
                logger.error("checksum differs for %s: %s != %s", url, left, right)
    return {"equal": equal, "different": different}
