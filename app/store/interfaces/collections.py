"""The repositories of collections' content: references and the entries they resolve to."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ...model import DiffKey, Document, DocumentPage
from .content import ContentReader
from .documents import Copied


class References(Copied):
    """The references of collections, versioned like item versions: a reference added at the
    collection's seq s and removed at seq t belongs to the versions cut at s..t-1 (`sup` LIVE
    while it stays).

    A reference: `collection`, `expression` (normalised), `url` (the item it names), `type`,
    `item_seq` (a pin: the item version it names; None: it follows the item), `pin` (the source
    version or item version its expression names, or None), `cascade` (the expression whose
    cascade added it, or None), `created_on`, `created_by`, `seq`, `sup`.
    """

    def add(self, collection_url: str, references: list[Document]) -> int:
        """Insert live references, each at the collection's next seq; return the last seq."""
        raise NotImplementedError

    def remove(self, collection_url: str, expressions: list[str]) -> list[Document]:
        """End the live references with these expressions (at the collection's next seq each);
        return those ended."""
        raise NotImplementedError

    def live(self, collection_url: str, expressions: Iterable[str]) -> dict[str, Document]:
        """The live references with these expressions, by expression."""
        raise NotImplementedError

    def bringing(self, collection_url: str, url: str) -> list[Document]:
        """The live references of a collection that name an item url."""
        raise NotImplementedError

    def page(self, collection_url: str, seq: int, q: str | None, skip: int,
             limit: int) -> DocumentPage:
        """A page of the references at `seq` (HEAD_SEQ: the live ones) by expression, with `q`
        (taken literally, any case) in the expression when given; and how many match."""
        raise NotImplementedError

    def iter_at(self, collection_url: str, seq: int,
                batch_size: int = 1000) -> Iterator[Document]:
        """Every reference at `seq`, by expression, read a batch at a time (for exports)."""
        raise NotImplementedError

    def delete_for_collection(self, collection_url: str) -> None:
        raise NotImplementedError


class CollectionEntries(ContentReader, Copied):
    """The item versions of collections: which item version (`item_seq`) each item url of a
    collection resolves to, versioned by the collection's seq exactly as items are by their
    source's, with the collection's HEAD checksum and counts kept with every write.

    An entry: `collection`, `url`, `type`, `id`, `source`, `item_seq`, `deleted` (the item left
    the collection, or was deleted in its source), `retired`, `follow` (an unversioned reference
    brings it in: it follows its item), `updated_on` (collection-side: when the item entered,
    changed in or left the collection), `seq`, `sup`.

    Content reads (the `ContentReader` methods) return the item versions the entries name, as
    `Items` returns them, with the entry's `deleted` and `retired`, the entry's `updated_on` as
    `entry_updated_on` (a tombstone's `updated_on` is the entry's), ordered by `url` where items
    are by `id`. Search filters (`query.filters`) are not applied to collections.
    """

    def head(self, collection_url: str, url: str) -> Document | None:
        """The live entry of an item url in a collection (a tombstone included), or None."""
        raise NotImplementedError

    def write(self, collection_url: str, entries: list[tuple[Document, int | None]]) -> int:
        """Make each entry the live one of its url, each at the collection's next seq, with the
        collection's checksum, counts and lastUpdated; return the last seq.

        Each entry comes with the seq of the live entry its writer read (None: none); StaleHead
        if another write came first. Urls are distinct within one call.
        """
        raise NotImplementedError

    def set_follow(self, collection_url: str, url: str, follow: bool) -> None:
        """Change whether the live entry follows its item: not content, so in place."""
        raise NotImplementedError

    def followers(self, url: str) -> list[Document]:
        """The live entries, in every collection, that follow an item url."""
        raise NotImplementedError

    def find(self, collection_url: str, seq: int, item_type: str,
             item_id: str) -> list[Document]:
        """The item versions of one type and id in a collection at `seq` (one per source)."""
        raise NotImplementedError

    def holding(self, source_url: str) -> list[str]:
        """The collections whose HEAD or one of whose versions holds an item of a source."""
        raise NotImplementedError

    def sources_held(self, collection_url: str) -> list[str]:
        """The sources whose items a collection holds or held (HEAD, versions, history)."""
        raise NotImplementedError

    def mark_following(self, url: str, since: str) -> None:
        """Note that the followers of an item are about to be brought up to date, where that is
        not atomic with the item's write (MongoDB); no-op where it is."""

    def unmark_following(self, url: str) -> None:
        """The followers of an item are up to date."""

    def marked_following(self, older_than: str | None = None) -> list[str]:
        """Item urls whose followers a crash may have left behind (marked before older_than)."""
        return []

    def finish_pending(self, older_than: str | None = None) -> int:
        """Roll forward or drop entry writes interrupted by a crash (0 where writes are atomic)."""
        return 0

    def recompute_checksums(self) -> None:
        """Bring every collection's HEAD checksum and counts in line with its entries."""

    def delete_for_collection(self, collection_url: str) -> None:
        raise NotImplementedError

    def diff_key(self, item: Document) -> DiffKey:
        return DiffKey(item["entry_updated_on"], item["type"], item["url"])
