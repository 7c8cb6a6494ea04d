"""MongoDB repositories of accounts and content: users, orgs, sources, versions and items.

No multi-document transactions: an item write is four single-document steps with a `pending`
marker, ordered so that an interruption between any two leaves the content unchanged or is rolled
forward (`finish_pending`), and a version cut first settles writes still in flight (`settle`).
HEAD's checksum is computed by one scan and cached by seq.
"""

from __future__ import annotations

import builtins
import logging
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from bson.regex import Regex
from pymongo import ASCENDING, DESCENDING, ReplaceOne, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ... import model
from ...model import (
    CHANGES,
    HEAD_SEQ,
    LIVE,
    ContentQuery,
    DiffKey,
    Document,
    Source,
    Version,
    Visibility,
    checksum_of,
    version_url,
)
from .. import interfaces
from ..base import DuplicateKey, StaleHead, offset, page_end
from ..records import RecordedSources, RecordedVersions

logger = logging.getLogger(__name__)
DIFF_SORT = [("updated_on", ASCENDING), ("type", ASCENDING), ("id", ASCENDING)]


class DocumentRepository(interfaces.DocumentRepository):
    """Documents of one collection addressed by `_id`."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def get(self, key: str) -> Document | None:
        document: Document | None = self.collection.find_one({"_id": key})
        return document

    def insert(self, document: Document) -> None:
        try:
            self.collection.insert_one(document)
        except DuplicateKeyError:
            raise DuplicateKey(str(document["_id"])) from None

    def update(self, key: str, changes: Document) -> Document | None:
        document: Document | None = self.collection.find_one_and_update(
            {"_id": key}, {"$set": changes}, return_document=ReturnDocument.AFTER)
        return document

    def delete(self, key: str) -> None:
        self.collection.delete_one({"_id": key})

    def page(self, query: Document, sort: list[tuple[str, int]], skip: int,
             limit: int) -> tuple[list[Document], int]:
        cursor = self.collection.find(query).sort(sort).skip(offset(skip)).limit(limit)
        return list(cursor), self.collection.count_documents(query)

    def dump(self) -> Iterator[Document]:
        return iter(self.collection.find({}).sort("_id", ASCENDING))

    def load(self, documents: Iterable[Document]) -> int:
        return bulk_replace(self.collection, documents)


def count_up_to(collection: Any, query: Document, most: int) -> int:
    """How many documents match, counting no further than `most`. A bound past any real count
    is left out: FerretDB 1.24 counts nothing under a `$limit` of 2**62 (MongoDB counts all)."""
    if most >= 2**31:
        return int(collection.count_documents(query))
    return int(collection.count_documents(query, limit=most))


def bulk_replace(collection: Any, documents: Iterable[Document], batch_size: int = 1000) -> int:
    """Upsert documents by `_id` in batches (what `termsync db copy` writes)."""
    count = 0
    batch: list[Document] = []
    for document in documents:
        batch.append(document)
        if len(batch) >= batch_size:
            count += _replace_batch(collection, batch)
            batch = []
    return count + _replace_batch(collection, batch)


def _replace_batch(collection: Any, documents: list[Document]) -> int:
    if not documents:
        return 0
    if type(collection).__module__.startswith("mongomock"):
        # mongomock's bulk_write rejects what pymongo 4.20's ReplaceOne sends (tests only)
        for document in documents:
            collection.replace_one({"_id": document["_id"]}, document, upsert=True)
        return len(documents)
    # Into an empty target (the usual copy) every document is new: one insert of the batch, and
    # upserts only for those already there (a copy run again). An upsert costs a lookup by `_id`
    # each; on FerretDB 1.24 one that grows with the collection (a copy of 7,107 documents took
    # 392 s by upserts, bench/db_copy.py).
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(write_error.get("code") != 11000 for write_error in errors):
            raise
        present = [documents[write_error["index"]] for write_error in errors]
        collection.bulk_write([ReplaceOne({"_id": document["_id"]}, document, upsert=True)
                               for document in present], ordered=False)
    return len(documents)


class Users(DocumentRepository, interfaces.Users):
    """`users` and `tokens` (sha256 of each token, never the token)."""

    def __init__(self, db: Any) -> None:
        super().__init__(db["users"])
        self.tokens = db["tokens"]

    def ensure_indexes(self) -> None:
        self.tokens.create_index([("username", ASCENDING), ("created_on", ASCENDING),
                                  ("id", ASCENDING)])
        self.tokens.create_index([("bootstrap", ASCENDING)])

    def search(self, q: str | None, skip: int, limit: int) -> tuple[list[Document], int]:
        return self.page(text_filter(q, ("_id", "name")), [("_id", ASCENDING)], skip, limit)

    def page_of(self, usernames: list[str], skip: int,
                limit: int) -> tuple[list[Document], int]:
        return self.page({"_id": {"$in": usernames}}, [("_id", ASCENDING)], skip, limit)

    def add_token(self, token: Document) -> None:
        try:
            self.tokens.insert_one(dict(token))
        except DuplicateKeyError:
            raise DuplicateKey("token") from None

    def _with_id(self, token: Document | None) -> Document | None:
        """Tokens stored before they had ids get a random one when first read."""
        if token is not None and not token.get("id"):
            token_id = secrets.token_hex(8)
            self.tokens.update_one({"_id": token["_id"], "id": {"$exists": False}},
                                   {"$set": {"id": token_id}})
            token = self.tokens.find_one({"_id": token["_id"]})
        return token

    def token(self, token_hash: str) -> Document | None:
        return self._with_id(self.tokens.find_one({"_id": token_hash}))

    def token_of(self, username: str, token_id: str) -> Document | None:
        self.tokens_of(username, True)  # gives ids to any tokens stored before they had them
        token: Document | None = self.tokens.find_one({"username": username, "id": token_id})
        return token

    def tokens_of(self, username: str, include_revoked: bool) -> list[Document]:
        query: Document = {"username": username}
        if not include_revoked:
            query["revoked_on"] = None
        found = self.tokens.find(query).sort([("created_on", DESCENDING), ("id", DESCENDING)])
        return [token for token in map(self._with_id, found) if token is not None]

    def update_token(self, token_hash: str, changes: Document) -> None:
        self.tokens.update_one({"_id": token_hash}, {"$set": changes})

    def touch_token(self, token_hash: str, used_on: str, before: str) -> None:
        self.tokens.update_one({"_id": token_hash, "$or": [{"last_used_on": None},
                                                           {"last_used_on": {"$lt": before}}]},
                               {"$set": {"last_used_on": used_on}})

    def bootstrap_tokens(self) -> list[Document]:
        return list(self.tokens.find({"bootstrap": True, "revoked_on": None}))

    def dump(self) -> Iterator[Document]:
        for user in super().dump():
            tokens = self.tokens.find({"username": user["_id"]}).sort("_id", ASCENDING)
            yield dict(user, tokens=[self._with_id(token) for token in tokens])

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        for user in documents:
            tokens = user.pop("tokens", [])
            self.collection.replace_one({"_id": user["_id"]}, user, upsert=True)
            for token in tokens:
                record = {key: value for key, value in token.items() if key != "hash"}
                record.update(_id=token.get("_id") or token["hash"], username=user["_id"])
                record.setdefault("id", secrets.token_hex(8))
                self.tokens.replace_one({"_id": record["_id"]}, record, upsert=True)
            count += 1
        return count


class Orgs(DocumentRepository, interfaces.Orgs):
    """`orgs`, each with its `members`."""

    def __init__(self, db: Any) -> None:
        super().__init__(db["orgs"])

    def ensure_indexes(self) -> None:
        self.collection.create_index([("members", ASCENDING)])
        self.collection.create_index([("public_access", ASCENDING)])

    def update(self, key: str, changes: Document) -> Document | None:
        changes = {name: value for name, value in changes.items() if name != "members"}
        return super().update(key, changes)

    def add_member(self, org_id: str, username: str) -> None:
        self.collection.update_one({"_id": org_id}, {"$addToSet": {"members": username}})

    def remove_member(self, org_id: str, username: str) -> bool:
        done = self.collection.update_one({"_id": org_id, "members": username},
                                          {"$pull": {"members": username}})
        return bool(done.modified_count == 1)

    def for_member(self, username: str) -> list[str]:
        return sorted(org["_id"] for org in self.collection.find({"members": username}, {"_id": 1}))

    def is_public(self, org_id: str) -> bool:
        return self.collection.find_one({"_id": org_id, "public_access": {"$ne": "None"}},
                                        {"_id": 1}) is not None

    def private(self, excluding: frozenset[str] = frozenset()) -> list[str]:
        """Ids of the private orgs, but those in `excluding` (the caller's own)."""
        return sorted(org["_id"] for org in self.collection.find(
            {"public_access": "None", "_id": {"$nin": sorted(excluding)}}, {"_id": 1}))

    def search(self, q: str | None, member: str | None, visible_to: Visibility | None,
               skip: int, limit: int) -> tuple[list[Document], int]:
        parts: list[Document] = [text_filter(q, ("_id", "name"))]
        if member is not None:
            parts.append({"members": member})
        if visible_to is not None:
            parts.append({"$or": [{"public_access": {"$ne": "None"}},
                                  {"_id": {"$in": sorted(visible_to.orgs)}}]})
        return self.page(all_of(parts), [("_id", ASCENDING)], skip, limit)


def text_filter(q: str | None, fields: tuple[str, ...]) -> Document:
    """Documents with `q` (taken literally, any case) in one of `fields` (all when no `q`)."""
    if not q:
        return {}
    pattern = {"$regex": re.escape(q), "$options": "i"}
    return {"$or": [{name: pattern} for name in fields]}


def all_of(parts: list[Document]) -> Document:
    """One filter requiring every (non-empty) part."""
    parts = [part for part in parts if part]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _any_case(values: tuple[str, ...]) -> Document:
    # bson's Regex, not re.compile: Python marks its patterns Unicode, which pymongo sends as the
    # flag "u"; MongoDB ignores it, FerretDB refuses it ("invalid flag in regex options: u")
    return {"$in": [Regex(f"^{re.escape(value)}$", "i") for value in values]}


def item_filters(filters: model.ItemFilters) -> list[Document]:
    """Filters for OCL's search parameters over `items` (see model.ItemFilters)."""
    parts: list[Document] = []
    for path, values in (("concept_class", filters.concept_class),
                         ("datatype", filters.datatype), ("map_type", filters.map_type)):
        if values:
            parts.append({f"data.{path}": {"$in": list(values)}})
    if filters.locale:
        parts.append({"data.names.locale": _any_case(filters.locale)})
    if filters.q:
        parts.append(text_filter(filters.q, ("id", "data.names.name", "data.map_type",
                                             "data.from_concept_url", "data.to_concept_url",
                                             "data.to_concept_code")))
    for column, kind, value in filters.ends():
        escaped = re.escape(value)
        if kind == "concept":
            code = column.replace("_url", "_code")
            parts.append({"$or": [{f"data.{column}": {"$regex": f"/concepts/{escaped}/$"}},
                                  {f"data.{code}": value}]})
        elif kind == "source":
            source_column = column.replace("_concept_url", "_source_url")
            parts.append({"$or": [
                {f"data.{column}": {"$regex": f"/sources/{escaped}/concepts/"}},
                {f"data.{source_column}": {"$regex": f"/sources/{escaped}/$"}}]})
        else:
            parts.append({f"data.{column}": {"$regex": f"^/(orgs|users)/{escaped}/"}})
    return parts


class ConsoleSessions(interfaces.ConsoleSessions):
    """`console_sessions`: one document per signed-in console session."""

    def __init__(self, db: Any) -> None:
        self.collection = db["console_sessions"]

    def ensure_indexes(self) -> None:
        self.collection.create_index([("expires_at", ASCENDING)])

    def insert(self, session: Document) -> None:
        try:
            self.collection.insert_one(dict(session))
        except DuplicateKeyError:
            raise DuplicateKey(str(session["_id"])) from None

    def get(self, key: str) -> Document | None:
        session: Document | None = self.collection.find_one({"_id": key})
        return session

    def delete(self, key: str) -> None:
        self.collection.delete_one({"_id": key})

    def purge(self, now: str) -> int:
        return int(self.collection.delete_many({"expires_at": {"$lt": now}}).deleted_count)


def visibility_filter(visible_to: Visibility | None, private_orgs: list[str]) -> Document:
    """The filter for "a repository this caller may see": public with a public owner (not one of
    `private_orgs`, the private orgs the caller is not a member of), theirs, or their orgs'."""
    if visible_to is None:
        return {}
    public: Document = {"public_access": {"$in": ["View", "Edit"]}}
    if private_orgs:
        public["owner_url"] = {"$nin": [f"/orgs/{org}/" for org in private_orgs]}
    visible: list[Document] = [public]
    if visible_to.username:
        visible.append({"owner_type": "User", "owner": visible_to.username})
    if visible_to.orgs:
        visible.append({"owner_type": "Organization", "owner": {"$in": sorted(visible_to.orgs)}})
    return {"$or": visible}


def repo_type_filter(repo_type: str) -> Document:
    """Repositories of one kind (documents written before collections existed are sources)."""
    if repo_type == model.COLLECTION_TYPE:
        return {"repo_type": repo_type}
    return {"repo_type": {"$ne": model.COLLECTION_TYPE}}


class Sources(RecordedSources):
    """`sources`: metadata plus the seq counter of their item versions (and HEAD's checksum
    by seq, `checksum`, worked out on first use)."""

    documents: DocumentRepository

    def __init__(self, db: Any) -> None:
        self.documents = DocumentRepository(db["sources"])
        self.collection = self.documents.collection
        self.orgs = Orgs(db)

    def ensure_indexes(self) -> None:
        self.collection.create_index([("owner_url", ASCENDING), ("_id", ASCENDING)])

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

    def cut_state(self, url: str) -> model.CutState:
        source = self.get(url)
        if source is None:
            return model.CutState(0, None, None, None)
        return model.CutState(source.seq, source.last_updated, None, None)

    def search(self, owner_url: str | None, visible_to: Visibility | None,
               filters: model.RepoFilters, skip: int,
               limit: int) -> tuple[builtins.list[Source], int]:
        private_orgs = [] if visible_to is None else self.orgs.private(visible_to.orgs)
        parts = [visibility_filter(visible_to, private_orgs),
                 text_filter(filters.q, ("id", "short_code", "name", "full_name"))]
        for name, value in (("owner_url", owner_url), ("owner", filters.owner),
                            ("owner_type", filters.owner_type),
                            ("custom_validation_schema", filters.custom_validation_schema)):
            if value is not None:
                parts.append({name: value})
        if filters.repo_type is not None:
            parts.append(repo_type_filter(filters.repo_type))
        if filters.updated_since is not None:
            parts.append({"$or": [{"updated_on": {"$gte": filters.updated_since}},
                                  {"last_updated": {"$gte": filters.updated_since}}]})
        found, total = self.documents.page(all_of(parts), [("_id", ASCENDING)], skip, limit)
        return [self.record(document) for document in found], total

    def count_public(self, owner_url: str, repo_type: str = model.SOURCE_TYPE) -> int:
        if owner_url.startswith("/orgs/") and not self.orgs.is_public(owner_url.split("/")[2]):
            return 0
        return int(self.collection.count_documents(
            {"owner_url": owner_url, "public_access": {"$in": ["View", "Edit"]},
             **repo_type_filter(repo_type)}))

    def load(self, documents: Iterable[Document]) -> int:
        # HEAD's checksum is kept by seq here: recomputed on first use, never copied
        return self.documents.load({key: value for key, value in document.items()
                             if key not in ("content_checksum", "checksum", "counts")}
                            for document in documents)


class Versions(RecordedVersions):
    """`versions` of sources, newest first by `created_on`."""

    documents: DocumentRepository

    def __init__(self, db: Any) -> None:
        self.documents = DocumentRepository(db["versions"])
        self.collection = self.documents.collection

    def ensure_indexes(self) -> None:
        self.collection.create_index([("source", ASCENDING), ("created_on", DESCENDING)])
        self.collection.create_index([("released", ASCENDING), ("created_on", DESCENDING)])

    def delete_for_source(self, source_url: str) -> None:
        self.collection.delete_many({"source": source_url})

    def list(self, source_url: str, released: bool | None, skip: int, limit: int,
             updated_since: str | None = None) -> tuple[builtins.list[Version], int]:
        query: Document = {"source": source_url}
        if released is not None:
            query["released"] = released
        if updated_since is not None:
            query["updated_on"] = {"$gte": updated_since}
        found, total = self.documents.page(query, [("created_on", DESCENDING), ("_id", DESCENDING)],
                                           skip, limit)
        return [self.record(document) for document in found], total

    def all_released(self) -> Iterator[Version]:
        return (self.record(document) for document in
                self.collection.find({"released": True}).sort("_id", ASCENDING))

    def newest_released(self, skip: int, limit: int) -> builtins.list[Version]:
        return [self.record(document) for document in self.collection.find({"released": True})
                .sort([("created_on", DESCENDING), ("_id", DESCENDING)])
                .skip(offset(skip)).limit(limit)]


def diff_range(selected: Document, after: DiffKey | None, until: DiffKey | None,
               id_field: str) -> Document:
    """`selected` narrowed to the diff positions after `after` and up to `until` (inclusive),
    in (updated_on, type, id_field) order. The plain range on updated_on says the same as the
    `$or`s, in the form the query planner turns into index bounds."""
    def side(key: DiffKey, before: str, last: str) -> Document:
        return {"$or": [
            {"updated_on": {before: key.updated_on}},
            {"updated_on": key.updated_on, "type": {before: key.type}},
            {"updated_on": key.updated_on, "type": key.type, id_field: {last: key.id}}]}
    bounds: list[Document] = []
    span: Document = {}
    if after is not None:
        bounds.append(side(after, "$gt", "$gt"))
        span["$gte"] = after.updated_on
    if until is not None:
        bounds.append(side(until, "$lt", "$lte"))
        span["$lte"] = until.updated_on
    return {"$and": [selected, {"updated_on": span}, *bounds]} if bounds else selected


def with_before(changed: list[Document], before: Iterable[Document]) -> list[Document]:
    """Changed item versions, each with `before`: the state of its url in the earlier content
    (`before` lists the live, undeleted versions there), None where it had none."""
    states = {old["url"]: "retired" if old["retired"] else "active" for old in before}
    return [dict(item, before=states.get(item["url"])) for item in changed]


class Items(interfaces.Items):
    """`items` (item versions by version url), `heads` (each item's live seq, by item url) and
    `mapping_keys`. A head is claimed with compare-and-swap on its seq, so two concurrent
    writers of one item cannot both win."""

    def __init__(self, db: Any, sources: Sources) -> None:
        self.items = db["items"]
        self.heads = db["heads"]
        self.mapping_keys = db["mapping_keys"]
        self.sources = sources
        self.settle_timeout = 10.0  # seconds a cut waits for another process's write

    def ensure_indexes(self) -> None:
        self.items.create_index([("source", ASCENDING), ("type", ASCENDING), ("id", ASCENDING),
                                 ("sup", ASCENDING)], name="item_at_seq")
        self.items.create_index([("source", ASCENDING), ("type", ASCENDING), ("sup", ASCENDING),
                                 ("id", ASCENDING)], name="head_list")
        self.items.create_index([("source", ASCENDING), ("updated_on", ASCENDING),
                                 ("type", ASCENDING), ("id", ASCENDING)], name="diffs")
        self.items.create_index([("url", ASCENDING), ("seq", DESCENDING)], name="by_url")
        self.items.create_index([("pending", ASCENDING)], sparse=True, name="pending")
        self.heads.create_index([("source", ASCENDING)])
        self.mapping_keys.create_index([("source", ASCENDING)])
        # The console's reads: concepts by class or datatype, mappings both ways, changes.
        for name, field in (("by_class", "data.concept_class"), ("by_datatype", "data.datatype")):
            self.items.create_index([("source", ASCENDING), ("type", ASCENDING),
                                     (field, ASCENDING), ("id", ASCENDING)], name=name)
        for name, field in (("from_concept", "data.from_concept_url"),
                            ("to_concept", "data.to_concept_url")):
            self.items.create_index([(field, ASCENDING), ("source", ASCENDING),
                                     ("id", ASCENDING)], name=name)
        self.items.create_index([("source", ASCENDING), ("seq", ASCENDING)], name="by_seq")

    @staticmethod
    def at(seq: int) -> Document:
        """The filter selecting item versions that are the content at `seq`."""
        if seq >= HEAD_SEQ:
            return {"sup": LIVE}
        return {"seq": {"$lte": seq}, "sup": {"$gt": seq}}

    def item_version(self, url: str, seq: int) -> Document | None:
        item: Document | None = self.items.find_one({"_id": version_url(url, seq)})
        return None if item is None or item.get("pending") else item

    def history(self, source_url: str, url: str, skip: int,
                limit: int) -> tuple[list[Document], int]:
        query = {"source": source_url, "url": url, "deleted": False,
                 "pending": {"$exists": False}}
        cursor = self.items.find(query).sort("seq", DESCENDING).skip(offset(skip)).limit(limit)
        return list(cursor), int(self.items.count_documents(query))

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        ends: list[Document] = [{"data.from_concept_url": concept_url}]
        if inverse:
            ends.append({"data.to_concept_url": concept_url})
        query = dict(self._filter(ContentQuery(source_url, seq, ("Mapping",),
                                               include_retired=include_retired)), **{"$or": ends})
        return list(self.items.find(query).sort("id", ASCENDING))

    def head(self, url: str) -> Document | None:
        head: Document | None = self.heads.find_one({"_id": url})
        return head

    def current(self, url: str, seq: int = HEAD_SEQ) -> Document | None:
        head = self.head(url)
        if head is None:
            return None
        if head["seq"] <= seq:
            item: Document | None = self.items.find_one({"_id": version_url(url, head["seq"])})
            if item is not None and item.get("pending"):
                self._roll_forward(head)
                item = self.items.find_one({"_id": version_url(url, head["seq"])})
            return item
        found: Document | None = self.items.find_one({"source": head["source"],
                                                      "type": head["type"], "id": head["id"],
                                                      **self.at(seq)})
        return found

    def write(self, item: Document, previous_seq: int | None) -> int:
        """Four single-document steps after the seq is allocated: 1. insert the new version
        invisible (sup == its own seq) and marked pending; 2. claim the head (compare-and-swap
        on its seq); 3. supersede the old version; 4. make the new one live."""
        seq = self.sources.next_seq(item["source"], item["updated_on"])
        item = dict(item, seq=seq)
        new_id = version_url(item["url"], seq)
        self.items.insert_one(dict(item, _id=new_id, sup=seq, pending=True))
        head = {"_id": item["url"], "source": item["source"], "type": item["type"],
                "id": item["id"], "seq": seq, "deleted": item["deleted"],
                "retired": item["retired"]}
        try:
            if previous_seq is None:
                self.heads.insert_one(head)
            elif self.heads.update_one({"_id": item["url"], "seq": previous_seq},
                                       {"$set": head}).matched_count != 1:
                raise DuplicateKeyError("head moved")
        except DuplicateKeyError:
            self.items.delete_one({"_id": new_id})
            raise StaleHead(item["url"]) from None
        self._complete(item["url"], seq, previous_seq)
        return seq

    def _complete(self, url: str, seq: int, previous_seq: int | None) -> None:
        if previous_seq is not None:
            self.items.update_one({"_id": version_url(url, previous_seq)}, {"$set": {"sup": seq}})
        self.items.update_one({"_id": version_url(url, seq)},
                              {"$set": {"sup": LIVE}, "$unset": {"pending": ""}})

    def _roll_forward(self, head: Document) -> None:
        """Finish steps 3 and 4 of a write whose head was claimed (idempotent)."""
        live = self.items.find_one({"source": head["source"], "type": head["type"],
                                    "id": head["id"], "sup": LIVE})
        previous_seq = live["seq"] if live is not None and live["seq"] != head["seq"] else None
        self._complete(head["_id"], head["seq"], previous_seq)

    def settle(self, source_url: str, seq: int) -> int:
        """Wait until no write with a seq <= `seq` is half done in this source.

        Writes that claimed their head are rolled forward at once; the others finish or fail
        within milliseconds, or after `settle_timeout` seconds are taken for dead and discarded.
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
            time.sleep(0.005)  # another process's write, a few milliseconds from done

    def finish_pending(self, older_than: str | None = None) -> int:
        query: Document = {"pending": True}
        if older_than is not None:
            query["updated_on"] = {"$lt": older_than}
        resolved = 0
        for pending in list(self.items.find(query, {"url": 1, "seq": 1})):
            head = self.head(pending["url"])
            if head is not None and head["seq"] == pending["seq"]:
                self._roll_forward(head)
            else:
                self.items.delete_one({"_id": pending["_id"]})
            resolved += 1
        return resolved

    def _filter(self, query: ContentQuery) -> Document:
        source = query.source if isinstance(query.source, str) else {"$in": list(query.source)}
        selected: Document = {"source": source, **self.at(query.seq)}
        selected["type"] = query.types[0] if len(query.types) == 1 else {"$in": list(query.types)}
        if not query.include_deleted:
            selected["deleted"] = False
        if not query.include_retired:
            selected["retired"] = False
        if query.updated_since is not None:
            selected["updated_on"] = {"$gte": query.updated_since}
        if query.filters:
            selected = all_of([selected, *item_filters(query.filters)])
        return selected

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        cursor = self.items.find(self._filter(query)).sort([("type", ASCENDING), ("id", ASCENDING)])
        if skip:
            cursor = cursor.skip(offset(skip))
        if limit:
            cursor = cursor.limit(limit)
        return list(cursor)

    def count(self, query: ContentQuery) -> int:
        return int(self.items.count_documents(self._filter(query)))

    def diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
             limit: int) -> list[Document]:
        selected = diff_range(self._filter(query), after, until, "id")
        return list(self.items.find(selected).sort(DIFF_SORT).limit(limit))

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]:
        selected = diff_range(self._filter(query), after, until, "id")
        return page_end((DiffKey(item["updated_on"], item["type"], item["id"]) for item in
                         self.items.find(selected, {"updated_on": 1, "type": 1, "id": 1})
                         .sort(DIFF_SORT).limit(limit + 1)), limit)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        selected = self._filter(replace(query, types=query.types[:1]))
        return iter(self.items.find(selected).sort("id", ASCENDING).batch_size(batch_size))

    def newest(self, query: ContentQuery) -> Document | None:
        found: Document | None = self.items.find_one(self._filter(query),
                                                      sort=[("updated_on", DESCENDING)])
        return found

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        selected = self._filter(replace(query, types=query.types[:1]))
        page = list(self.items.find(selected).sort("id", ASCENDING).skip(offset(skip))
                    .limit(limit))
        if query.filters.q:  # a text search counts no further than the page and count_limit need
            return page, count_up_to(self.items, selected,
                                     max(count_limit, offset(skip) + limit) + 1)
        return page, int(self.items.count_documents(selected))

    def changes(self, source_url: str, since_seq: int, until_seq: int = HEAD_SEQ) -> dict[str, int]:
        counts = dict.fromkeys(CHANGES, 0)
        changed = self.items.find({"source": source_url, "seq": {"$gt": since_seq, "$lte": until_seq},
                                   "sup": {"$gt": until_seq}},
                                  {"url": 1, "deleted": 1, "retired": 1})
        for item in changed:
            before = self.items.find_one({"url": item["url"], "seq": {"$lte": since_seq},
                                          "sup": {"$gt": since_seq}, "deleted": False},
                                         {"retired": 1})
            if before is None:
                if not item["deleted"]:
                    counts["created"] += 1
            elif item["deleted"]:
                counts["deleted"] += 1
            elif item["retired"] and not before["retired"]:
                counts["retired"] += 1
            else:
                counts["updated"] += 1
        return counts

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]:
        after = since_seq
        while True:
            batch = list(self.items.find({"source": source_url, "seq": {"$gt": after,
                                                                        "$lte": until_seq},
                                          "sup": {"$gt": until_seq}, "type": item_type,
                                          "deleted": deleted})
                         .sort("seq", ASCENDING).limit(batch_size))
            yield from with_before(batch, self.items.find(
                {"url": {"$in": [item["url"] for item in batch]}, **self.at(since_seq),
                 "deleted": False}, {"url": 1, "retired": 1}) if batch else [])
            if len(batch) < batch_size:
                return
            after = batch[-1]["seq"]

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int:
        return int(self.items.count_documents({"source": source_url,
                                               "seq": {"$gt": since_seq, "$lte": until_seq},
                                               "sup": {"$gt": until_seq}}))

    def linked_mappings(self, concept_url: str, end: str, source_url: str | None = None,
                        seq: int = HEAD_SEQ, limit: int = 1000) -> list[Document]:
        field = {"from": "data.from_concept_url", "to": "data.to_concept_url"}[end]
        selected: Document = {field: concept_url, "deleted": False,
                              **self.at(HEAD_SEQ if source_url is None else seq)}
        if source_url is not None:
            selected["source"] = source_url
        return list(self.items.find(selected).sort([("source", ASCENDING), ("id", ASCENDING)])
                    .limit(limit))

    def scan_checksum(self, source_url: str, seq: int) -> str:
        selected = self._filter(ContentQuery(source_url, seq))
        return checksum_of((item["url"], item["seq"])
                           for item in self.items.find(selected, {"url": 1, "seq": 1, "_id": 0}))

    def head_checksum(self, source_url: str) -> str:
        source = self.sources.documents.get(source_url) or {}
        cached = source.get("checksum") or {}
        if cached.get("seq") == source.get("seq") and cached.get("content"):
            return str(cached["content"])
        value = self.scan_checksum(source_url, HEAD_SEQ)
        self.sources.documents.update(source_url,
                                      {"checksum": {"seq": source.get("seq"), "content": value}})
        return value

    def mapping_for_key(self, key: str) -> str | None:
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

    def dump(self) -> Iterator[Document]:
        for item in self.items.find({}).sort("_id", ASCENDING):
            if not item.get("pending"):
                yield item
        for key in self.mapping_keys.find({}).sort("_id", ASCENDING):
            yield {"mapping_key": key["_id"], "source": key["source"],
                   "mapping_id": key["mapping_id"]}

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        items: list[Document] = []
        keys: list[Document] = []  # mapping keys, in batches too (one upsert each was a scan
        # each on FerretDB: a copy of 100,000 mappings' keys never ended)

        def flush() -> None:
            bulk_replace(self.items, items)
            bulk_replace(self.heads, ({"_id": item["url"], "source": item["source"],
                                       "type": item["type"], "id": item["id"], "seq": item["seq"],
                                       "deleted": item["deleted"], "retired": item["retired"]}
                                      for item in items if item["sup"] == LIVE))
            bulk_replace(self.mapping_keys, keys)
            items.clear()
            keys.clear()

        for document in documents:
            count += 1
            if "mapping_key" in document:
                keys.append({"_id": document["mapping_key"], "source": document["source"],
                             "mapping_id": document["mapping_id"]})
            else:
                items.append(document)
            if len(items) + len(keys) >= 1000:
                flush()
        flush()
        return count
