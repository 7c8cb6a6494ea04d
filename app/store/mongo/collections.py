"""MongoDB repositories of collections: their references and their entries.

No multi-document transactions: an entry write is the four single-document steps of an item write
(`content.Items.write`) over `collection_entries` and `entry_heads` (each entry url's live seq in
its collection): insert the new entry invisible and pending, claim the head by compare-and-swap,
supersede the old entry, make the new one live. `finish_pending` and `settle` roll interrupted
writes forward or discard them. The collection's HEAD checksum is computed by one scan and cached
by seq, as a source's is.

An item write and the writes that bring its followers up to date are not atomic here: the domain
marks the item url first (`following_marks`) and clears the mark when its followers are current,
so that after a crash the maintenance sweep finds the items whose followers may lag.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ... import model
from ...model import (
    COLLECTION_TYPE,
    HEAD_SEQ,
    LIVE,
    ContentQuery,
    DiffKey,
    Document,
    checksum_of,
    version_url,
)
from .. import interfaces
from ..base import StaleHead, offset, page_end
from .content import (
    Items,
    Sources,
    all_of,
    bulk_replace,
    diff_range,
    item_filters,
    with_before,
)
from .indexes import create_index

logger = logging.getLogger(__name__)
DIFF_SORT = [("updated_on", ASCENDING), ("type", ASCENDING), ("url", ASCENDING)]


def at(seq: int) -> Document:
    """The filter selecting rows versioned by seq/sup that are the version at `seq`."""
    if seq >= HEAD_SEQ:
        return {"sup": LIVE}
    return {"seq": {"$lte": seq}, "sup": {"$gt": seq}}


def _allocate(sources: Sources, collection_url: str, count: int,
              updated_on: str | None = None) -> int:
    """Take `count` seqs of a collection atomically (stamping lastUpdated); return the first."""
    changes: Document = {"$inc": {"seq": count}}
    if updated_on:
        changes["$max"] = {"last_updated": updated_on}
    found = sources.collection.find_one_and_update({"_id": collection_url}, changes,
                                                   return_document=ReturnDocument.AFTER)
    if found is None:
        raise KeyError(collection_url)
    return int(found["seq"]) - count + 1


class References(interfaces.References):
    """`collection_references`: one document per reference version."""

    def __init__(self, db: Any, sources: Sources) -> None:
        self.references = db["collection_references"]
        self.sources = sources

    def ensure_indexes(self) -> None:
        self.references.create_index([("collection", ASCENDING), ("expression", ASCENDING),
                                      ("sup", ASCENDING)])
        self.references.create_index([("collection", ASCENDING), ("url", ASCENDING),
                                      ("sup", ASCENDING)])
        self.references.create_index([("collection", ASCENDING), ("sup", ASCENDING),
                                      ("expression", ASCENDING)])

    def add(self, collection_url: str, references: list[Document]) -> int:
        if not references:
            return 0
        first = _allocate(self.sources, collection_url, len(references))
        documents = []
        for number, reference in enumerate(references):
            document = dict(reference, collection=collection_url, seq=first + number, sup=LIVE)
            document["_id"] = f"{collection_url}\t{reference['expression']}\t{first + number}"
            documents.append(document)
        self.references.insert_many(documents)
        return first + len(references) - 1

    def remove(self, collection_url: str, expressions: list[str]) -> list[Document]:
        found = self.live(collection_url, expressions)
        if not found:
            return []
        first = _allocate(self.sources, collection_url, len(found))
        ended = []
        for number, expression in enumerate(sorted(found)):
            reference = found[expression]
            self.references.update_one({"_id": reference["_id"]}, {"$set": {"sup": first + number}})
            ended.append(dict(reference, sup=first + number))
        return ended

    def live(self, collection_url: str, expressions: Iterable[str]) -> dict[str, Document]:
        wanted = list(dict.fromkeys(expressions))
        found: dict[str, Document] = {}
        for start in range(0, len(wanted), 1000):
            for reference in self.references.find({"collection": collection_url, "sup": LIVE,
                                                   "expression": {"$in": wanted[start:start + 1000]}}):
                found[reference["expression"]] = reference
        return found

    def bringing(self, collection_url: str, url: str) -> list[Document]:
        return list(self.references.find({"collection": collection_url, "url": url, "sup": LIVE}))

    def _filter(self, collection_url: str, seq: int, q: str | None) -> Document:
        selected: Document = {"collection": collection_url, **at(seq)}
        if q:
            selected["expression"] = {"$regex": re.escape(q), "$options": "i"}
        return selected

    def page(self, collection_url: str, seq: int, q: str | None, skip: int,
             limit: int) -> model.DocumentPage:
        selected = self._filter(collection_url, seq, q)
        cursor = self.references.find(selected).sort("expression", ASCENDING).skip(offset(skip))
        return list(cursor.limit(limit)), int(self.references.count_documents(selected))

    def iter_at(self, collection_url: str, seq: int,
                batch_size: int = 1000) -> Iterator[Document]:
        return iter(self.references.find(self._filter(collection_url, seq, None))
                    .sort("expression", ASCENDING).batch_size(batch_size))

    def delete_for_collection(self, collection_url: str) -> None:
        self.references.delete_many({"collection": collection_url})

    def dump(self) -> Iterator[Document]:
        return iter(self.references.find({}).sort("_id", ASCENDING))

    def load(self, documents: Iterable[Document]) -> int:
        return bulk_replace(self.references, (dict(document, _id=f"{document['collection']}\t"
                                                   f"{document['expression']}\t{document['seq']}")
                                              for document in documents))


class CollectionEntries(interfaces.CollectionEntries):
    """`collection_entries` (entry versions), `entry_heads` (each entry url's live seq in its
    collection) and `following_marks`; reads join `items` by version url."""

    def __init__(self, db: Any, sources: Sources, items: Items) -> None:
        self.entries = db["collection_entries"]
        self.heads = db["entry_heads"]
        self.marks = db["following_marks"]
        self.sources = sources
        self.items = items
        self.settle_timeout = 10.0  # seconds a cut waits for another process's write

    def ensure_indexes(self) -> None:
        self.entries.create_index([("collection", ASCENDING), ("url", ASCENDING),
                                   ("seq", DESCENDING)], name="entry_by_url")
        self.entries.create_index([("collection", ASCENDING), ("type", ASCENDING),
                                   ("sup", ASCENDING), ("url", ASCENDING)], name="entry_head_list")
        self.entries.create_index([("collection", ASCENDING), ("type", ASCENDING),
                                   ("url", ASCENDING), ("sup", ASCENDING)], name="entry_at_seq")
        self.entries.create_index([("collection", ASCENDING), ("updated_on", ASCENDING),
                                   ("type", ASCENDING), ("url", ASCENDING)], name="entry_diffs")
        self.entries.create_index([("collection", ASCENDING), ("type", ASCENDING),
                                   ("id", ASCENDING), ("sup", ASCENDING)], name="entry_by_id")
        create_index(self.entries, [("url", ASCENDING), ("sup", ASCENDING)],
                     name="entry_followers", partialFilterExpression={"follow": True})
        self.entries.create_index([("source", ASCENDING), ("collection", ASCENDING)],
                                  name="entry_by_source")
        self.entries.create_index([("pending", ASCENDING)], sparse=True, name="entry_pending")
        self.entries.create_index([("collection", ASCENDING), ("seq", ASCENDING)],
                                  name="entry_by_seq")
        self.marks.create_index([("since", ASCENDING)])

    # --- entries --------------------------------------------------------------------------
    def head(self, collection_url: str, url: str) -> Document | None:
        head = self.heads.find_one({"_id": f"{collection_url}\t{url}"})
        if head is None:
            return None
        entry: Document | None = self.entries.find_one(
            {"_id": f"{collection_url}\t{url}\t{head['seq']}"})
        if entry is not None and entry.get("pending"):
            self._complete(collection_url, url, head["seq"])
            entry = self.entries.find_one({"_id": entry["_id"]})
        return entry

    def write(self, collection_url: str, entries: list[tuple[Document, int | None]]) -> int:
        if not entries:
            return 0
        newest = max(entry["updated_on"] for entry, _ in entries)
        first = _allocate(self.sources, collection_url, len(entries), newest)
        for number, (entry, previous_seq) in enumerate(entries):
            self._write_one(collection_url, dict(entry, seq=first + number), previous_seq)
        return first + len(entries) - 1

    def _write_one(self, collection_url: str, entry: Document, previous_seq: int | None) -> None:
        """The four steps: insert pending and invisible, claim the head, supersede, go live."""
        url, seq = entry["url"], entry["seq"]
        key = f"{collection_url}\t{url}"
        self.entries.insert_one(dict(entry, _id=f"{key}\t{seq}", collection=collection_url,
                                     sup=seq, pending=True))
        head = {"_id": key, "collection": collection_url, "url": url, "seq": seq}
        try:
            if previous_seq is None:
                self.heads.insert_one(head)
            elif self.heads.update_one({"_id": key, "seq": previous_seq},
                                       {"$set": head}).matched_count != 1:
                raise DuplicateKeyError("head moved")
        except DuplicateKeyError:
            self.entries.delete_one({"_id": f"{key}\t{seq}"})
            raise StaleHead(url) from None
        self._complete(collection_url, url, seq)

    def _complete(self, collection_url: str, url: str, seq: int) -> None:
        """Steps 3 and 4 of the write whose head is `seq` (idempotent)."""
        key = f"{collection_url}\t{url}"
        self.entries.update_many({"collection": collection_url, "url": url, "sup": LIVE,
                                  "seq": {"$ne": seq}}, {"$set": {"sup": seq}})
        self.entries.update_one({"_id": f"{key}\t{seq}"},
                                {"$set": {"sup": LIVE}, "$unset": {"pending": ""}})

    def _resolve_pending(self, pending: Document) -> bool:
        """Roll a pending entry forward if its head was claimed, else leave it; True if done."""
        head = self.heads.find_one({"_id": f"{pending['collection']}\t{pending['url']}"})
        if head is not None and head["seq"] == pending["seq"]:
            self._complete(pending["collection"], pending["url"], pending["seq"])
            return True
        return False

    def settle(self, source_url: str, seq: int) -> int:
        query = {"collection": source_url, "pending": True, "seq": {"$lte": seq}}
        deadline = time.monotonic() + self.settle_timeout
        seen = 0
        while True:
            pending = list(self.entries.find(query))
            seen = max(seen, len(pending))
            waiting = [entry for entry in pending if not self._resolve_pending(entry)]
            if not waiting:
                return seen
            if time.monotonic() >= deadline:
                for entry in waiting:
                    logger.warning("discarding entry write %s: pending for %.0f s", entry["_id"],
                                   self.settle_timeout)
                    self.entries.delete_one({"_id": entry["_id"], "pending": True})
                return seen
            time.sleep(0.005)

    def finish_pending(self, older_than: str | None = None) -> int:
        query: Document = {"pending": True}
        if older_than is not None:
            query["updated_on"] = {"$lt": older_than}
        resolved = 0
        for pending in list(self.entries.find(query)):
            if not self._resolve_pending(pending):
                self.entries.delete_one({"_id": pending["_id"]})
            resolved += 1
        return resolved

    def set_follow(self, collection_url: str, url: str, follow: bool) -> None:
        self.entries.update_one({"collection": collection_url, "url": url, "sup": LIVE},
                                {"$set": {"follow": follow}})

    def followers(self, url: str) -> list[Document]:
        return list(self.entries.find({"url": url, "sup": LIVE, "follow": True})
                    .sort("collection", ASCENDING))

    def holding(self, source_url: str) -> list[str]:
        holding = []
        for collection_url in sorted(self.entries.distinct("collection", {"source": source_url})):
            selected = {"collection": collection_url, "source": source_url, "deleted": False}
            if self.entries.find_one(dict(selected, sup=LIVE), {"_id": 1}) is not None:
                holding.append(collection_url)
                continue
            for version in self.sources.collection.database["versions"].find(
                    {"source": collection_url}, {"seq": 1}):
                if self.entries.find_one(dict(selected, **at(version["seq"])), {"_id": 1}):
                    holding.append(collection_url)
                    break
        return holding

    def sources_held(self, collection_url: str) -> list[str]:
        return sorted(self.entries.distinct("source", {"collection": collection_url}))

    def mark_following(self, url: str, since: str) -> None:
        self.marks.update_one({"_id": url}, {"$setOnInsert": {"since": since}}, upsert=True)

    def unmark_following(self, url: str) -> None:
        self.marks.delete_one({"_id": url})

    def marked_following(self, older_than: str | None = None) -> list[str]:
        query = {} if older_than is None else {"since": {"$lt": older_than}}
        return [mark["_id"] for mark in self.marks.find(query).sort("_id", ASCENDING)]

    def delete_for_collection(self, collection_url: str) -> None:
        self.entries.delete_many({"collection": collection_url})
        self.heads.delete_many({"collection": collection_url})

    def dump(self) -> Iterator[Document]:
        for entry in self.entries.find({}).sort("_id", ASCENDING):
            if not entry.get("pending"):
                yield entry

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        batch: list[Document] = []

        def flush() -> None:
            bulk_replace(self.entries, batch)
            bulk_replace(self.heads, ({"_id": f"{entry['collection']}\t{entry['url']}",
                                       "collection": entry["collection"], "url": entry["url"],
                                       "seq": entry["seq"]}
                                      for entry in batch if entry["sup"] == LIVE))
            batch.clear()

        for document in documents:
            batch.append(dict(document, _id=f"{document['collection']}\t{document['url']}\t"
                                            f"{document['seq']}"))
            count += 1
            if len(batch) >= 1000:
                flush()
        flush()
        return count

    # --- content reads --------------------------------------------------------------------
    @staticmethod
    def _filter(query: ContentQuery) -> Document:
        if not isinstance(query.source, str):
            raise ValueError("a collection's content is read one collection at a time")
        selected: Document = {"collection": query.source, **at(query.seq)}
        selected["type"] = query.types[0] if len(query.types) == 1 else {"$in": list(query.types)}
        if not query.include_deleted:
            selected["deleted"] = False
        if not query.include_retired:
            selected["retired"] = False
        if query.updated_since is not None:
            selected["updated_on"] = {"$gte": query.updated_since}
        return selected

    def _joined(self, entries: list[Document]) -> list[Document]:
        """The item versions the entries name, in the entries' order, with the entries' state."""
        keys = [version_url(entry["url"], entry["item_seq"]) for entry in entries]
        items = {item["_id"]: item for item in self.items.items.find({"_id": {"$in": keys}})}
        found = []
        for key, entry in zip(keys, entries, strict=True):
            item = items.get(key)
            if item is None:
                continue
            item = dict(item, entry_updated_on=entry["updated_on"], entry_seq=entry["seq"],
                        deleted=entry["deleted"], retired=entry["retired"])
            if entry["deleted"]:
                item.update(updated_on=entry["updated_on"], data={})
            found.append(item)
        return found

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        cursor = self.entries.find(self._filter(query)).sort([("type", ASCENDING),
                                                               ("url", ASCENDING)])
        if skip:
            cursor = cursor.skip(offset(skip))
        if limit:
            cursor = cursor.limit(limit)
        return self._joined(list(cursor))

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        """The entries in url order, their item versions matched a batch at a time."""
        query = replace(query, types=query.types[:1])
        narrowing = item_filters(query.filters)
        wanted = max(count_limit, offset(skip) + limit) + 1
        found: list[Document] = []
        batch: list[Document] = []

        def matches() -> list[Document]:
            keys = [version_url(entry["url"], entry["item_seq"]) for entry in batch]
            hits = {item["_id"] for item in self.items.items.find(
                all_of([{"_id": {"$in": keys}}, *narrowing]), {"_id": 1})}
            return [entry for key, entry in zip(keys, batch, strict=True) if key in hits]

        for entry in self.entries.find(self._filter(query)).sort("url", ASCENDING):
            batch.append(entry)
            if len(batch) >= 1000:
                found.extend(matches())
                batch.clear()
                if len(found) >= wanted:
                    break
        found.extend(matches() if batch else [])
        found = found[:wanted]
        return self._joined(found[offset(skip):offset(skip) + limit]), len(found)

    def count(self, query: ContentQuery) -> int:
        return int(self.entries.count_documents(self._filter(query)))

    def diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
             limit: int) -> list[Document]:
        return self._joined(list(self.entries.find(diff_range(self._filter(query), after, until,
                                                              "url"))
                                 .sort(DIFF_SORT).limit(limit)))

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]:
        return page_end((DiffKey(entry["updated_on"], entry["type"], entry["url"]) for entry in
                         self.entries.find(diff_range(self._filter(query), after, until, "url"),
                                           {"updated_on": 1, "type": 1, "url": 1})
                         .sort(DIFF_SORT).limit(limit + 1)), limit)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        cursor = self.entries.find(self._filter(replace(query, types=query.types[:1]))) \
            .sort("url", ASCENDING).batch_size(batch_size)
        batch: list[Document] = []
        for entry in cursor:
            batch.append(entry)
            if len(batch) >= batch_size:
                yield from self._joined(batch)
                batch = []
        yield from self._joined(batch)

    def newest(self, query: ContentQuery) -> Document | None:
        found = list(self.entries.find(self._filter(query)).sort(
            [("updated_on", DESCENDING), ("type", DESCENDING), ("url", DESCENDING)]).limit(1))
        joined = self._joined(found)
        return joined[0] if joined else None

    def find(self, collection_url: str, seq: int, item_type: str,
             item_id: str) -> list[Document]:
        selected = self._filter(ContentQuery(collection_url, seq, (item_type,),
                                             include_deleted=True))
        return self._joined(list(self.entries.find(dict(selected, id=item_id))
                                 .sort("url", ASCENDING)))

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        ends: list[Document] = [{"data.from_concept_url": concept_url}]
        if inverse:
            ends.append({"data.to_concept_url": concept_url})
        selected = self._filter(ContentQuery(source_url, seq, ("Mapping",),
                                             include_retired=include_retired))
        found: dict[str, Document] = {}
        for item in self.items.items.find({"$or": ends, "type": "Mapping"}, {"url": 1, "seq": 1}):
            entry = self.entries.find_one(dict(selected, url=item["url"], item_seq=item["seq"]))
            if entry is not None:
                found[item["url"]] = entry
        return self._joined([found[key] for key in sorted(found)])

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]:
        after = since_seq
        while True:
            batch = list(self.entries.find({"collection": source_url,
                                            "seq": {"$gt": after, "$lte": until_seq},
                                            "sup": {"$gt": until_seq}, "type": item_type,
                                            "deleted": deleted})
                         .sort("seq", ASCENDING).limit(batch_size))
            yield from with_before(self._joined(batch), self.entries.find(
                {"collection": source_url, "url": {"$in": [entry["url"] for entry in batch]},
                 **at(since_seq), "deleted": False}, {"url": 1, "retired": 1}) if batch else [])
            if len(batch) < batch_size:
                return
            after = batch[-1]["seq"]

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int:
        return int(self.entries.count_documents({"collection": source_url,
                                                 "seq": {"$gt": since_seq, "$lte": until_seq},
                                                 "sup": {"$gt": until_seq}}))

    def scan_checksum(self, source_url: str, seq: int) -> str:
        selected = self._filter(ContentQuery(source_url, seq))
        return checksum_of((entry["url"], entry["item_seq"]) for entry in self.entries.find(
            selected, {"url": 1, "item_seq": 1, "_id": 0}))

    def head_checksum(self, source_url: str) -> str:
        collection = self.sources.documents.get(source_url) or {}
        cached = collection.get("checksum") or {}
        if cached.get("seq") == collection.get("seq") and cached.get("content"):
            return str(cached["content"])
        value = self.scan_checksum(source_url, HEAD_SEQ)
        self.sources.documents.update(source_url, {"checksum": {"seq": collection.get("seq"),
                                                                "content": value}})
        return value

    def recompute_checksums(self) -> None:
        for collection in self.sources.collection.find({"repo_type": COLLECTION_TYPE},
                                                       {"_id": 1}):
            self.sources.documents.update(collection["_id"], {"checksum": {}})
