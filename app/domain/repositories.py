"""Repositories: one per MongoDB collection; they own the queries and the indexes.

Item versions model (DESIGN, Storage): every write to a concept or mapping inserts a new item
version stamped with the source's next `seq`. `sup` is the seq that superseded it (LIVE while it is
the newest). The content of a version cut at seq V is the item versions with seq <= V < sup: one
range query, no copy of the source when a version is cut.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from .errors import Conflict

logger = logging.getLogger(__name__)

LIVE = 2**62  # `sup` of an item version that nothing superseded yet
HEAD_SEQ = LIVE - 1  # reading HEAD is reading "a version cut at the end of time"


class DocumentRepository:
    """Documents addressed by `_id`: get, insert (409 when it exists), update, delete, page."""

    noun = "Document"

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def get(self, key: str) -> dict[str, Any] | None:
        return self.collection.find_one({"_id": key})

    def insert(self, document: dict[str, Any]) -> None:
        try:
            self.collection.insert_one(document)
        except DuplicateKeyError:
            name = document.get("id", document["_id"])
            raise Conflict(f"{self.noun} '{name}' already exists.") from None

    def update(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Set fields; return the document as it is now (None if there is none)."""
        return self.collection.find_one_and_update({"_id": key}, {"$set": changes},
                                                   return_document=ReturnDocument.AFTER)

    def delete(self, key: str) -> None:
        self.collection.delete_one({"_id": key})

    def page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
             limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the documents matching `query`, and how many match in all."""
        cursor = self.collection.find(query).sort(sort).skip(skip).limit(limit)
        return list(cursor), self.collection.count_documents(query)


class Users(DocumentRepository):
    """User accounts and their hashed API tokens."""

    noun = "User"

    def __init__(self, db: Any) -> None:
        super().__init__(db["users"])
        self.tokens = db["tokens"]

    def ensure_indexes(self) -> None:
        self.tokens.create_index([("username", ASCENDING)])

    def search(self, q: str | None, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Users whose username or name contains `q` (any case), by username."""
        query: dict[str, Any] = {}
        if q:
            query = _text_filter(q, ("_id", "name"))
        return self.page(query, [("_id", ASCENDING)], skip, limit)

    def page_of(self, usernames: list[str], skip: int,
                limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the named users (an org's members), by username."""
        return self.page({"_id": {"$in": usernames}}, [("_id", ASCENDING)], skip, limit)

    def add_token(self, username: str, token_hash: str, created_on: str) -> None:
        self.tokens.replace_one({"_id": token_hash},
                                {"_id": token_hash, "username": username, "created_on": created_on},
                                upsert=True)

    def user_for_token(self, token_hash: str) -> dict[str, Any] | None:
        token = self.tokens.find_one({"_id": token_hash})
        return self.get(token["username"]) if token else None

    def list(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return self.page({}, [("_id", ASCENDING)], skip, limit)


class Orgs(DocumentRepository):
    """Organizations and their members."""

    noun = "Organization"

    def __init__(self, db: Any) -> None:
        super().__init__(db["orgs"])

    def ensure_indexes(self) -> None:
        self.collection.create_index([("members", ASCENDING)])

    def add_member(self, org_id: str, username: str) -> None:
        self.collection.update_one({"_id": org_id}, {"$addToSet": {"members": username}})

    def remove_member(self, org_id: str, username: str) -> bool:
        """Take a user out of an organization; False if they were not a member."""
        done = self.collection.update_one({"_id": org_id, "members": username},
                                          {"$pull": {"members": username}})
        return done.modified_count == 1

    def for_member(self, username: str) -> list[str]:
        return [org["_id"] for org in self.collection.find({"members": username}, {"_id": 1})]

    def search(self, *, q: str | None = None, member: str | None = None,
               private_visible: list[str] | None = None, skip: int = 0,
               limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Organizations by id: with `q` in their id or name, with `member` among their members;
        `private_visible` (None: all) names the private ones the caller may see."""
        parts: list[dict[str, Any]] = []
        if q:
            parts.append(_text_filter(q, ("_id", "name")))
        if member is not None:
            parts.append({"members": member})
        if private_visible is not None:
            parts.append({"$or": [{"public_access": {"$ne": "None"}},
                                  {"_id": {"$in": sorted(private_visible)}}]})
        return self.page(_all_of(parts), [("_id", ASCENDING)], skip, limit)

    def list(self, query: dict[str, Any], skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return self.page(query, [("_id", ASCENDING)], skip, limit)


class Sources(DocumentRepository):
    """Sources (HEAD metadata plus the seq counter of their item versions)."""

    noun = "Source"

    def __init__(self, db: Any) -> None:
        super().__init__(db["sources"])

    def ensure_indexes(self) -> None:
        self.collection.create_index([("owner_url", ASCENDING), ("id", ASCENDING)])

    def next_seq(self, url: str, updated_on: str) -> int:
        """Allocate the next item-version seq atomically, and stamp the source's lastUpdated."""
        source = self.collection.find_one_and_update(
            {"_id": url}, {"$inc": {"seq": 1}, "$max": {"last_updated": updated_on}},
            return_document=ReturnDocument.AFTER)
        return int(source["seq"])

    def next_mapping_number(self, url: str) -> int:
        source = self.collection.find_one_and_update(
            {"_id": url}, {"$inc": {"mapping_counter": 1}}, return_document=ReturnDocument.AFTER)
        return int(source["mapping_counter"])

    def search(self, *, viewer: str | None, viewer_orgs: list[str], is_admin: bool,
               owner_url: str | None = None, owner: str | None = None,
               owner_type: str | None = None, q: str | None = None,
               custom_validation_schema: str | None = None, updated_since: str | None = None,
               skip: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Sources a caller may see (public ones, their own, their orgs'; admins all), narrowed by
        owner, text in the id or names, validation schema, or a change (metadata or content) at
        or after `updated_since`; by url."""
        parts: list[dict[str, Any]] = []
        if not is_admin:
            visible: list[dict[str, Any]] = [{"public_access": {"$in": ["View", "Edit"]}}]
            if viewer:
                visible.append({"owner_type": "User", "owner": viewer})
            if viewer_orgs:
                visible.append({"owner_type": "Organization", "owner": {"$in": sorted(viewer_orgs)}})
            parts.append({"$or": visible})
        if owner_url is not None:
            parts.append({"owner_url": owner_url})
        if owner is not None:
            parts.append({"owner": owner})
        if owner_type is not None:
            parts.append({"owner_type": owner_type})
        if q:
            parts.append(_text_filter(q, ("id", "short_code", "name", "full_name")))
        if custom_validation_schema is not None:
            parts.append({"custom_validation_schema": custom_validation_schema})
        if updated_since is not None:
            parts.append({"$or": [{"updated_on": {"$gte": updated_since}},
                                  {"last_updated": {"$gte": updated_since}}]})
        return self.page(_all_of(parts), [("_id", ASCENDING)], skip, limit)

    def count_public(self, owner_url: str) -> int:
        """How many sources of an owner anyone may see (an owner's `public_sources`)."""
        return self.collection.count_documents({"owner_url": owner_url,
                                                "public_access": {"$in": ["View", "Edit"]}})

    def list(self, query: dict[str, Any], skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return self.page(query, [("_id", ASCENDING)], skip, limit)


class Versions(DocumentRepository):
    """Source versions: metadata and the seq they were cut at."""

    noun = "Version"

    def __init__(self, db: Any) -> None:
        super().__init__(db["versions"])

    def ensure_indexes(self) -> None:
        self.collection.create_index([("source", ASCENDING), ("created_on", DESCENDING)])

    def delete_for_source(self, source_url: str) -> None:
        self.collection.delete_many({"source": source_url})

    def list(self, source_url: str, released: bool | None, skip: int,
             limit: int, updated_since: str | None = None) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {"source": source_url}
        if released is not None:
            query["released"] = released
        if updated_since is not None:
            query["updated_on"] = {"$gte": updated_since}
        return self.page(query, [("created_on", DESCENDING), ("_id", DESCENDING)], skip, limit)

    def all_released(self) -> Iterator[dict[str, Any]]:
        """Every released version of every source, by url (startup checks their exports)."""
        return iter(self.collection.find({"released": True}).sort("_id", ASCENDING))

    def latest_released(self, source_url: str) -> dict[str, Any] | None:
        found = self.list(source_url, True, 0, 1)[0]
        return found[0] if found else None


class Items:
    """Concept and mapping item versions, plus `heads`: each item's live seq, addressed by url.

    Item versions are keyed by their `version_url` and heads by the item `url`, so the hot path of
    a write (read the head, supersede it, insert the next version) is three primary-key operations.
    A head is claimed with compare-and-swap on its seq, so two concurrent writers of one item
    cannot both win.
    """

    def __init__(self, db: Any) -> None:
        self.items = db["items"]
        self.heads = db["heads"]
        self.mapping_keys = db["mapping_keys"]
        self.settle_timeout = 10.0  # seconds a cut waits for another process's write

    def ensure_indexes(self) -> None:
        self.items.create_index([("source", ASCENDING), ("type", ASCENDING), ("id", ASCENDING),
                                 ("sup", ASCENDING)], name="item_at_seq")
        self.items.create_index([("source", ASCENDING), ("type", ASCENDING), ("sup", ASCENDING),
                                 ("id", ASCENDING)], name="head_list")
        self.items.create_index([("source", ASCENDING), ("updated_on", ASCENDING),
                                 ("type", ASCENDING), ("id", ASCENDING)], name="diffs")
        self.items.create_index([("source", ASCENDING), ("url", ASCENDING), ("sup", ASCENDING)],
                                name="by_url")
        self.items.create_index([("pending", ASCENDING)], sparse=True, name="pending")
        self.items.create_index([("source", ASCENDING), ("data.from_concept_url", ASCENDING),
                                 ("sup", ASCENDING)], name="mappings_from")
        self.items.create_index([("source", ASCENDING), ("data.to_concept_url", ASCENDING),
                                 ("sup", ASCENDING)], name="mappings_to")
        self.heads.create_index([("source", ASCENDING)])
        self.mapping_keys.create_index([("source", ASCENDING)])

    @staticmethod
    def at(seq: int) -> dict[str, Any]:
        """The filter selecting item versions that are the content at `seq`."""
        if seq >= HEAD_SEQ:
            return {"sup": LIVE}
        return {"seq": {"$lte": seq}, "sup": {"$gt": seq}}

    def item_version(self, url: str, seq: int) -> dict[str, Any] | None:
        """One item version by its version url (None while it is still pending)."""
        item = self.items.find_one({"_id": version_url(url, seq)})
        return None if item is None or item.get("pending") else item

    def history(self, source_url: str, url: str, skip: int,
                limit: int) -> tuple[list[dict[str, Any]], int]:
        """The versions of one item, newest first (tombstones and pending writes left out)."""
        query = {"source": source_url, "url": url, "deleted": False, "pending": {"$exists": False}}
        cursor = self.items.find(query).sort("seq", DESCENDING).skip(skip).limit(limit)
        return list(cursor), self.items.count_documents(query)

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[dict[str, Any]]:
        """The mappings of a source at `seq` from a concept (with `inverse`, also to it), by id."""
        ends = [{"data.from_concept_url": concept_url}]
        if inverse:
            ends.append({"data.to_concept_url": concept_url})
        query: dict[str, Any] = {"source": source_url, "type": "Mapping", "deleted": False,
                                 **self.at(seq), "$or": ends}
        if not include_retired:
            query["retired"] = False
        return list(self.items.find(query).sort("id", ASCENDING))

    def head(self, url: str) -> dict[str, Any] | None:
        """The head record of an item url: its live seq, deleted and retired flags."""
        return self.heads.find_one({"_id": url})

    def current(self, url: str, seq: int = HEAD_SEQ) -> dict[str, Any] | None:
        """The item version of one item at `seq` (tombstones included), or None."""
        head = self.head(url)
        if head is None:
            return None
        if head["seq"] <= seq:
            item = self.items.find_one({"_id": version_url(url, head["seq"])})
            if item is not None and item.get("pending"):
                self._roll_forward(head)
                item = self.items.find_one({"_id": version_url(url, head["seq"])})
            return item
        return self.items.find_one({"source": head["source"], "type": head["type"],
                                    "id": head["id"], **self.at(seq)})

    def write(self, item: dict[str, Any], previous_seq: int | None) -> None:
        """Make `item` the live version; `previous_seq` is the live seq the writer read.

        Four single-document steps, ordered so that an interruption between any two of them
        leaves the content unchanged or is rolled forward by `finish_pending` (no multi-document
        transaction needed): 1. insert the new version invisible (sup == its own seq) and
        marked pending; 2. claim the head (compare-and-swap on its seq); 3. supersede the old
        version; 4. make the new one live.
        """
        new_id = version_url(item["url"], item["seq"])
        self.items.insert_one(dict(item, _id=new_id, sup=item["seq"], pending=True))
        head = {"_id": item["url"], "source": item["source"], "type": item["type"],
                "id": item["id"], "seq": item["seq"], "deleted": item["deleted"],
                "retired": item["retired"]}
        try:
            if previous_seq is None:
                self.heads.insert_one(head)
            elif self.heads.update_one({"_id": item["url"], "seq": previous_seq},
                                       {"$set": head}).matched_count != 1:
                raise DuplicateKeyError("head moved")
        except DuplicateKeyError:
            self.items.delete_one({"_id": new_id})
            raise Conflict(f"{item['type']} '{item['id']}' was changed concurrently; retry.") from None
        self._complete(item["url"], item["seq"], previous_seq)

    def _complete(self, url: str, seq: int, previous_seq: int | None) -> None:
        if previous_seq is not None:
            self.items.update_one({"_id": version_url(url, previous_seq)}, {"$set": {"sup": seq}})
        self.items.update_one({"_id": version_url(url, seq)},
                              {"$set": {"sup": LIVE}, "$unset": {"pending": ""}})

    def _roll_forward(self, head: dict[str, Any]) -> None:
        """Finish steps 3 and 4 of a write whose head was claimed (idempotent)."""
        live = self.items.find_one({"source": head["source"], "type": head["type"],
                                    "id": head["id"], "sup": LIVE})
        previous_seq = live["seq"] if live is not None and live["seq"] != head["seq"] else None
        self._complete(head["_id"], head["seq"], previous_seq)

    def settle(self, source_url: str, seq: int) -> int:
        """Wait until no write with a seq <= `seq` is half done in this source (other processes).

        A version cut at `seq` must never gain an item afterwards: a write that allocated its
        seq before the cut but is still pending would otherwise appear in the version when it
        completes. Writes that claimed their head are rolled forward at once; the others finish
        or fail within milliseconds, or after `settle_timeout` seconds are taken for dead and
        discarded.
        Returns how many pending item versions were seen.
        """
        query = {"source": source_url, "pending": True, "seq": {"$lte": seq}}
        deadline = time.monotonic() + self.settle_timeout
        seen = 0
        while True:
            pending = list(self.items.find(query, {"url": 1, "seq": 1}))
            seen = max(seen, len(pending))
            waiting = []
            for item in pending:
                head = self.head(item["url"])
                if head is not None and head["seq"] == item["seq"]:
                    self._roll_forward(head)
                else:
                    waiting.append(item)
            if not waiting:
                return seen
            if time.monotonic() >= deadline:
                for item in waiting:
                    logger.warning("discarding write %s: pending for %.0f s", item["_id"],
                                   self.settle_timeout)
                    self.items.delete_one({"_id": item["_id"], "pending": True})
                return seen
            time.sleep(0.005)

    def finish_pending(self, older_than: str | None = None) -> int:
        """Roll forward writes interrupted after claiming their head; drop the others.

        `older_than` (an updated_on) leaves alone writes that may still be in flight in another
        process. Returns how many pending item versions were resolved.
        """
        query: dict[str, Any] = {"pending": True}
        if older_than is not None:
            query["updated_on"] = {"$lt": older_than}
        resolved = 0
        for pending in list(self.items.find(query, {"url": 1, "seq": 1, "source": 1, "type": 1,
                                                    "id": 1})):
            head = self.head(pending["url"])
            if head is not None and head["seq"] == pending["seq"]:
                self._roll_forward(head)
            else:
                self.items.delete_one({"_id": pending["_id"]})
            resolved += 1
        return resolved

    def content_query(self, source_url: str, seq: int, types: list[str] | None = None,
                      include_retired: bool = True, include_deleted: bool = False,
                      updated_since: str | None = None) -> dict[str, Any]:
        """The filter for the content of a version, narrowed as the diff flags say."""
        query: dict[str, Any] = {"source": source_url, **self.at(seq)}
        if types is not None:
            query["type"] = types[0] if len(types) == 1 else {"$in": types}
        if not include_deleted:
            query["deleted"] = False
        if not include_retired:
            query["retired"] = False
        if updated_since is not None:
            query["updated_on"] = {"$gte": updated_since}
        return query

    def find(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int = 0,
             limit: int = 0, projection: dict[str, int] | None = None,
             batch_size: int = 0) -> Iterator[dict[str, Any]]:
        cursor = self.items.find(query, projection).sort(sort)
        if batch_size:
            cursor = cursor.batch_size(batch_size)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return iter(cursor)

    def count(self, query: dict[str, Any]) -> int:
        return self.items.count_documents(query)

    def newest(self, query: dict[str, Any]) -> dict[str, Any] | None:
        """The most recently updated item version matching `query`."""
        return self.items.find_one(query, sort=[("updated_on", DESCENDING)])

    def content_checksum(self, source_url: str, seq: int) -> str:
        """sha256 over f"{url}\\t{version}\\n" of every (non-deleted) item, in url order."""
        digest = hashlib.sha256()
        query = self.content_query(source_url, seq)
        for item in self.items.find(query, {"url": 1, "seq": 1, "_id": 0}).sort("url", ASCENDING):
            digest.update(f"{item['url']}\t{item['seq']}\n".encode())
        return digest.hexdigest()

    def mapping_for_key(self, key: str) -> str | None:
        """The id of the live mapping with this (source, from, type, to) key, if any."""
        found = self.mapping_keys.find_one({"_id": key})
        return found["mapping_id"] if found else None

    def set_mapping_key(self, key: str, source_url: str, mapping_id: str | None) -> None:
        if mapping_id is None:
            self.mapping_keys.delete_one({"_id": key})
        else:
            self.mapping_keys.replace_one({"_id": key}, {"_id": key, "source": source_url,
                                                         "mapping_id": mapping_id}, upsert=True)

    def delete_for_source(self, source_url: str) -> None:
        for collection in (self.items, self.heads, self.mapping_keys):
            collection.delete_many({"source": source_url})


def _text_filter(q: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """Documents with `q` (taken literally, any case) in one of `fields`."""
    pattern = {"$regex": re.escape(q), "$options": "i"}
    return {"$or": [{name: pattern} for name in fields]}


def _all_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One filter requiring every part."""
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def version_url(url: str, seq: int) -> str:
    """The url of one item version: the item url plus its version."""
    return f"{url}{seq}/"


class Repositories:
    """Every repository over one database, with index creation in one place."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.users = Users(db)
        self.orgs = Orgs(db)
        self.sources = Sources(db)
        self.versions = Versions(db)
        self.items = Items(db)

    def ensure_indexes(self) -> None:
        for repository in (self.users, self.orgs, self.sources, self.versions, self.items):
            repository.ensure_indexes()
