"""What every storage backend shares: its errors and the paging helpers its queries use.

The interfaces (one module per aggregate) are in `app.store.interfaces`; `app.store.sqlite` and
`app.store.mongo` implement each of them, and one contract suite (tests/app/test_store_contract.py)
runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from ..model import DiffKey


class StoreError(Exception):
    """A storage failure the caller can report (the database is down or busy)."""


class DuplicateKey(StoreError):
    """A document with this `_id` (or unique key) exists already."""


class StaleHead(StoreError):
    """An item's live version is not the one the writer read: another write came first."""


class DatabaseUnusable(StoreError):
    """The database cannot be opened or written at startup; the message names the path (or
    URI) and the cause, and startup stops with it."""


def offset(skip: int) -> int:
    """A skip both databases accept (a 64-bit integer): past the end of any list is its end."""
    return min(int(skip), 2**62)


def keyset_batches(read: Callable[[Any], list[Any]], key: Callable[[Any], Any], start: Any,
                   batch_size: int) -> Iterator[Any]:
    """Everything `read(after)` returns, a batch at a time: the first read starts after `start`,
    each next one after the `key` of the batch before's last row; a short batch is the last.
    Any size in flat memory, with no read held open between batches."""
    after = start
    while True:
        batch = read(after)
        yield from batch
        if len(batch) < batch_size:
            return
        after = key(batch[-1])


def page_end(keys: Iterable[DiffKey], limit: int) -> tuple[int, DiffKey | None, DiffKey | None]:
    """Where a diff page of up to `limit` items ends, from the keys of up to `limit` + 1 items
    in diff order: (how many it holds, the key of its last one, the key of the first item after
    it or None)."""
    count, last, following = 0, None, None
    for key in keys:
        count += 1
        if count <= limit:
            last = key
        else:
            following = key
            break
    return min(count, limit), last, following


Clock = Callable[[], datetime]
