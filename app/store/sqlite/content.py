"""SQLite repositories of accounts and content: users, orgs, console sessions, sources, versions
and items.

An item write is one transaction: it allocates the source's next seq, supersedes the live version,
inserts the new one and updates HEAD's checksum, so nothing is ever half written and a version
cut (which reads seq and checksum in one row) never gains an item afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .. import base
from ..base import (
    CHANGES,
    HEAD_SEQ,
    LIVE,
    ContentQuery,
    DiffKey,
    Document,
    DocumentPage,
    ItemMatch,
    StaleHead,
    Visibility,
    add_checksum,
    checksum_of,
    checksum_term,
    offset,
    version_url,
)
from .db import DocTable, SqliteDatabase


def like_pattern(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') that finds `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def survives_json(text: str) -> bool:
    """Whether `text` appears unchanged in the JSON of a document that holds it (so a LIKE on
    the whole document can pre-select rows): JSON escapes quotes, backslashes and controls."""
    return not any(char in '"\\' or ord(char) < 0x20 for char in text)


def search_page(table: DocTable, index: str, clause: str, params: list[Any], skip: int,
                limit: int) -> tuple[list[Document], int]:
    """A page (by `_id`) of a substring search and its count. No B-tree index answers "holds
    this text": the search walks `index` (the key, or the owner's part of it) in `_id` order
    and matches each row, which suits tables of hundreds or thousands of orgs or sources."""
    sql = f"SELECT _id, {table.select} FROM {table.table} INDEXED BY {index} WHERE {clause}"
    page = [table.document(row[0], row[1:]) for row in table.database.all(
        f"{sql} ORDER BY _id LIMIT {int(limit)} OFFSET {offset(skip)}", params)]
    row = table.database.one(f"SELECT count(*) FROM {table.table} INDEXED BY {index} "
                             f"WHERE {clause}", params)
    return page, int(row[0]) if row else 0


class DocumentRepository(base.DocumentRepository):
    """get / insert / update / delete / dump / load over one DocTable."""

    table: DocTable

    def get(self, key: str) -> Document | None:
        return self.table.get(key)

    def insert(self, document: Document) -> None:
        self.table.insert(document)

    def update(self, key: str, changes: Document) -> Document | None:
        return self.table.update(key, changes)

    def delete(self, key: str) -> None:
        self.table.delete(key)

    def dump(self) -> Iterator[Document]:
        return self.table.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.table.load(documents)


class Users(DocumentRepository, base.Users):
    """`users` and `tokens` (sha256 of each token, never the token)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "users")

    def list(self, skip: int, limit: int) -> tuple[list[Document], int]:
        return self.table.page("", (), "_id", skip, limit)

    def add_token(self, username: str, token_hash: str, created_on: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("INSERT OR REPLACE INTO tokens (hash, username, created_on) "
                               "VALUES (?, ?, ?)", (token_hash, username, created_on))

    def user_for_token(self, token_hash: str) -> Document | None:
        row = self.database.one("SELECT username FROM tokens WHERE hash = ?", (token_hash,))
        return self.get(row[0]) if row else None

    def dump(self) -> Iterator[Document]:
        for user in self.table.dump():
            tokens = self.database.all("SELECT hash, created_on FROM tokens WHERE username = ? "
                                       "ORDER BY hash", (user["_id"],))
            yield dict(user, tokens=[{"hash": hash_, "created_on": created}
                                     for hash_, created in tokens])

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        for user in documents:
            tokens = user.pop("tokens", [])
            self.table.load([user])
            for token in tokens:
                self.add_token(user["_id"], token["hash"], token["created_on"])
            count += 1
        return count


class Orgs(DocumentRepository, base.Orgs):
    """`orgs`, with members in `org_members` (indexed both ways)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "orgs", ("public_access",))

    def _with_members(self, org: Document | None) -> Document | None:
        if org is not None:
            org["members"] = [row[0] for row in self.database.all(
                "SELECT username FROM org_members WHERE org = ? ORDER BY username", (org["_id"],))]
        return org

    def get(self, key: str) -> Document | None:
        return self._with_members(self.table.get(key))

    def insert(self, document: Document) -> None:
        members = document.get("members") or []
        with self.database.transaction():
            self.table.insert({key: value for key, value in document.items() if key != "members"})
            for username in members:
                self.add_member(document["_id"], username)

    def update(self, key: str, changes: Document) -> Document | None:
        changes = {name: value for name, value in changes.items() if name != "members"}
        return self._with_members(self.table.update(key, changes))

    def delete(self, key: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM org_members WHERE org = ?", (key,))
            self.table.delete(key)

    def add_member(self, org_id: str, username: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO org_members (org, username) VALUES (?, ?)",
                               (org_id, username))

    def remove_member(self, org_id: str, username: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM org_members WHERE org = ? AND username = ?",
                               (org_id, username))

    def for_member(self, username: str) -> list[str]:
        return [row[0] for row in self.database.all(
            "SELECT org FROM org_members WHERE username = ? ORDER BY org", (username,))]

    def list(self, visible_to: Visibility | None, skip: int,
             limit: int) -> tuple[list[Document], int]:
        clause, params = "", ()  # type: tuple[str, tuple[str, ...]]
        if visible_to is not None:
            marks = ", ".join("?" * len(visible_to.orgs))
            clause = "public_access IS NOT 'None'" + (f" OR _id IN ({marks})" if marks else "")
            params = tuple(sorted(visible_to.orgs))
        orgs, total = self.table.page(clause, params, "_id", skip, limit)
        return [self._with_members(org) or org for org in orgs], total

    def search(self, visible_to: Visibility | None, text: str, skip: int,
               limit: int) -> DocumentPage:
        clause, params = "", []  # type: tuple[str, list[Any]]
        if visible_to is not None:
            marks = ", ".join("?" * len(visible_to.orgs))
            clause = "(public_access IS NOT 'None'" + (f" OR _id IN ({marks})" if marks else "") \
                + ") AND "
            params.extend(sorted(visible_to.orgs))
        pattern = like_pattern(text)
        clause += "(_id LIKE ? ESCAPE '\\' OR json_extract(doc, '$.name') LIKE ? ESCAPE '\\')"
        params.extend((pattern, pattern))
        orgs, total = search_page(self.table, "sqlite_autoindex_orgs_1", clause, params, skip,
                                  limit)
        return [self._with_members(org) or org for org in orgs], total

    def dump(self) -> Iterator[Document]:
        for org in self.table.dump():
            yield self._with_members(org) or org

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        for org in documents:
            members = org.pop("members", [])
            self.table.load([org])
            for username in members:
                self.add_member(org["_id"], username)
            count += 1
        return count


class ConsoleSessions(base.ConsoleSessions):
    """`console_sessions`: one row per signed-in console session, `expires_at` indexed."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "console_sessions", ("expires_at",))

    def insert(self, session: Document) -> None:
        self.table.insert(session)

    def get(self, key: str) -> Document | None:
        return self.table.get(key)

    def delete(self, key: str) -> None:
        self.table.delete(key)

    def purge(self, now: str) -> int:
        with self.database.transaction() as connection:
            done = connection.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now,))
        return done.rowcount


def visibility_clause(visible_to: Visibility | None) -> tuple[str, tuple[Any, ...]]:
    """SQL for "a source this caller may see" (public, theirs, or their orgs')."""
    if visible_to is None:
        return "", ()
    parts = ["public_access IN ('View', 'Edit')"]
    params: list[Any] = []
    if visible_to.username:
        parts.append("(owner_type = 'User' AND owner = ?)")
        params.append(visible_to.username)
    if visible_to.orgs:
        marks = ", ".join("?" * len(visible_to.orgs))
        parts.append(f"(owner_type = 'Organization' AND owner IN ({marks}))")
        params.extend(sorted(visible_to.orgs))
    return "(" + " OR ".join(parts) + ")", tuple(params)


class Sources(DocumentRepository, base.Sources):
    """`sources`: metadata in `doc`; seq, counters, lastUpdated and HEAD's checksum in columns."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "sources", ("owner_url", "owner", "owner_type",
                                                    "public_access", "seq", "mapping_counter",
                                                    "last_updated", "content_checksum"))

    def insert(self, document: Document) -> None:
        self.table.insert(dict(document, seq=document.get("seq") or 0,
                               mapping_counter=document.get("mapping_counter") or 0,
                               last_updated=document.get("last_updated") or "",
                               content_checksum=document.get("content_checksum")
                               or base.EMPTY_CHECKSUM))

    def next_mapping_number(self, url: str) -> int:
        with self.database.transaction() as connection:
            row = connection.execute("UPDATE sources SET mapping_counter = mapping_counter + 1 "
                                     "WHERE _id = ? RETURNING mapping_counter", (url,)).fetchone()
        return int(row[0])

    def cut_state(self, url: str) -> tuple[int, str | None, str | None]:
        row = self.database.one("SELECT seq, last_updated, content_checksum FROM sources "
                                "WHERE _id = ?", (url,))
        if row is None:
            return 0, None, base.EMPTY_CHECKSUM
        return int(row[0]), row[1] or None, row[2]

    def list(self, owner_url: str | None, visible_to: Visibility | None, skip: int,
             limit: int) -> tuple[list[Document], int]:
        clauses, params = [], []
        if owner_url is not None:
            clauses.append("owner_url = ?")
            params.append(owner_url)
        visible, visible_params = visibility_clause(visible_to)
        if visible:
            clauses.append(visible)
            params.extend(visible_params)
        return self.table.page(" AND ".join(clauses), params, "_id", skip, limit)

    def search(self, owner_url: str | None, visible_to: Visibility | None, text: str, skip: int,
               limit: int) -> DocumentPage:
        clauses, params = [], []  # type: tuple[list[str], list[Any]]
        if owner_url is not None:
            clauses.append("owner_url = ?")
            params.append(owner_url)
        visible, visible_params = visibility_clause(visible_to)
        if visible:
            clauses.append(visible)
            params.extend(visible_params)
        clauses.append("(" + " OR ".join(f"json_extract(doc, '$.{name}') LIKE ? ESCAPE '\\'"
                                         for name in ("id", "name", "full_name")) + ")")
        params.extend([like_pattern(text)] * 3)
        index = "sqlite_autoindex_sources_1" if owner_url is None else "sources_owner"
        return search_page(self.table, index, " AND ".join(clauses), params, skip, limit)


class Versions(DocumentRepository, base.Versions):
    """`versions` of sources, newest first by `created_on`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "versions", ("source", "created_on", "seq", "checksum"),
                              flags=("released",))

    def delete_for_source(self, source_url: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM versions WHERE source = ?", (source_url,))

    def list(self, source_url: str, released: bool | None, skip: int,
             limit: int) -> tuple[list[Document], int]:
        clause, params = "source = ?", [source_url]  # type: tuple[str, list[Any]]
        if released is not None:
            clause += " AND released = ?"
            params.append(1 if released else 0)
        return self.table.page(clause, params, "created_on DESC, _id DESC", skip, limit)


ITEM_COLUMNS = ("source", "type", "id", "url", "seq", "sup", "updated_on")
ITEM_FLAGS = ("deleted", "retired")


class Items(base.Items):
    """`items` (every item version, keyed by its version url) and `mapping_keys`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "items", ITEM_COLUMNS, flags=ITEM_FLAGS,
                              derive_id=lambda item: version_url(item["url"], item["seq"]))
        self.select = f"SELECT rowid, {self.table.select} FROM items"

    def _documents(self, sql: str, params: Iterable[Any]) -> list[Document]:
        return [self.table.document(row[0], row[1:]) for row in self.database.all(sql, params)]

    def _one(self, sql: str, params: Iterable[Any]) -> Document | None:
        row = self.database.one(sql, params)
        return None if row is None else self.table.document(row[0], row[1:])

    def head(self, url: str) -> Document | None:
        row = self.database.one("SELECT seq, deleted, retired, source, type, id FROM items "
                                "WHERE url = ? AND sup = ?", (url, LIVE))
        if row is None:
            return None
        return {"_id": url, "seq": row[0], "deleted": bool(row[1]), "retired": bool(row[2]),
                "source": row[3], "type": row[4], "id": row[5]}

    def current(self, url: str, seq: int = HEAD_SEQ) -> Document | None:
        if seq >= HEAD_SEQ:
            return self._one(f"{self.select} WHERE url = ? AND sup = ?", (url, LIVE))
        return self._one(f"{self.select} WHERE url = ? AND seq <= ? AND sup > ? "
                         "ORDER BY seq DESC LIMIT 1", (url, seq, seq))

    def item_version(self, url: str, seq: int) -> Document | None:
        return self._one(f"{self.select} WHERE url = ? AND seq = ?", (url, seq))

    def history(self, url: str) -> list[Document]:
        return self._documents(f"{self.select} WHERE url = ? ORDER BY seq DESC", (url,))

    def write(self, item: Document, previous_seq: int | None) -> int:
        url = item["url"]
        with self.database.transaction() as connection:
            live = connection.execute("SELECT seq, deleted FROM items WHERE url = ? AND sup = ?",
                                      (url, LIVE)).fetchone()
            if (live[0] if live else None) != previous_seq:
                raise StaleHead(url)
            seq, checksum = connection.execute(
                "UPDATE sources SET seq = seq + 1, last_updated = max(last_updated, ?) "
                "WHERE _id = ? RETURNING seq, content_checksum",
                (item["updated_on"], item["source"])).fetchone()
            if live is not None:
                connection.execute("UPDATE items SET sup = ? WHERE url = ? AND seq = ?",
                                   (seq, url, live[0]))
                if not live[1]:
                    checksum = add_checksum(checksum, -checksum_term(url, live[0]))
            stored = dict(item, _id=version_url(url, seq), seq=seq, sup=LIVE)
            connection.execute(self.table.insert_sql, self.table.row(stored))
            if not item["deleted"]:
                checksum = add_checksum(checksum, checksum_term(url, seq))
            connection.execute("UPDATE sources SET content_checksum = ? WHERE _id = ?",
                               (checksum, item["source"]))
        return int(seq)

    @staticmethod
    def _where(query: ContentQuery) -> tuple[str, list[Any]]:
        clauses, params = ["source = ?"], [query.source]  # type: tuple[list[str], list[Any]]
        if len(query.types) == 1:
            clauses.append("type = ?")
        else:
            clauses.append(f"type IN ({', '.join('?' * len(query.types))})")
        params.extend(query.types)
        if query.seq >= HEAD_SEQ:
            clauses.append("sup = ?")
            params.append(LIVE)
        else:
            clauses.append("sup > ? AND seq <= ?")
            params.extend((query.seq, query.seq))
        if not query.include_deleted:
            clauses.append("deleted = 0")
        if not query.include_retired:
            clauses.append("retired = 0")
        if query.updated_since is not None:
            clauses.append("updated_on >= ?")
            params.append(query.updated_since)
        return " AND ".join(clauses), params

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        clause, params = self._where(query)
        index = "items_head" if query.seq >= HEAD_SEQ and not query.include_deleted \
            and not query.include_retired else "items_at"
        sql = f"{self.select} INDEXED BY {index} WHERE {clause} ORDER BY type, id"
        if limit:
            sql += f" LIMIT {int(limit)} OFFSET {offset(skip)}"
        return self._documents(sql, params)

    def count(self, query: ContentQuery) -> int:
        clause, params = self._where(query)
        row = self.database.one(f"SELECT count(*) FROM items WHERE {clause}", params)
        return int(row[0]) if row else 0

    def diff(self, query: ContentQuery, after: DiffKey | None, limit: int) -> list[Document]:
        clause, params = self._where(query)
        if after is not None:
            clause += " AND (updated_on, type, id) > (?, ?, ?)"
            params.extend((after.updated_on, after.type, after.id))
        return self._documents(f"{self.select} INDEXED BY items_diff WHERE {clause} "
                               f"ORDER BY updated_on, type, id LIMIT {int(limit)}", params)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        clause, params = self._where(ContentQuery(
            query.source, query.seq, query.types[:1], query.include_retired,
            query.include_deleted, query.updated_since))
        after = ""
        while True:
            batch = self._documents(f"{self.select} INDEXED BY items_at WHERE {clause} "
                                    f"AND id > ? ORDER BY id LIMIT {int(batch_size)}",
                                    [*params, after])
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1]["id"]

    def newest(self, query: ContentQuery) -> Document | None:
        clause, params = self._where(query)
        return self._one(f"{self.select} INDEXED BY items_diff WHERE {clause} "
                         "ORDER BY updated_on DESC, type DESC, id DESC LIMIT 1", params)

    def search(self, query: ContentQuery, match: ItemMatch, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        query = ContentQuery(query.source, query.seq, query.types[:1], query.include_retired,
                             query.include_deleted, query.updated_since)
        clause, params = self._where(query)
        if match.concept_class is not None:
            index = "items_class"
        elif match.datatype is not None:
            index = "items_datatype"
        elif query.seq >= HEAD_SEQ and not query.include_deleted and not query.include_retired:
            index = "items_head"
        else:
            index = "items_at"
        for column in ("concept_class", "datatype"):
            value = getattr(match, column)
            if value is not None:
                clause += f" AND {column} = ?"
                params.append(value)
        if not match.text:
            page = self._documents(f"{self.select} INDEXED BY {index} WHERE {clause} ORDER BY id "
                                   f"LIMIT {int(limit)} OFFSET {offset(skip)}", params)
            # counted from the index that holds every column the clause names (no row read)
            counting = "items_head" if index == "items_at" and query.seq >= HEAD_SEQ else index
            row = self.database.one(f"SELECT count(*) FROM items INDEXED BY {counting} "
                                    f"WHERE {clause}", params)
            return page, int(row[0]) if row else 0
        # One walk in id order finds the matches up to what the page and the count need; the
        # whole document is matched first (cheap), its names only where that found something.
        pattern = like_pattern(match.text)
        names = ("EXISTS (SELECT 1 FROM json_each(items.doc, '$.data.names') "
                 "WHERE json_extract(value, '$.name') LIKE ? ESCAPE '\\')")
        if survives_json(match.text):
            names = f"doc LIKE ? ESCAPE '\\' AND {names}"
        clause += f" AND (id LIKE ? ESCAPE '\\' OR ({names}))"
        params.extend([pattern] * (3 if survives_json(match.text) else 2))
        wanted = max(count_limit, offset(skip) + limit) + 1
        found = [row[0] for row in self.database.all(
            f"SELECT rowid FROM items INDEXED BY {index} WHERE {clause} ORDER BY id "
            f"LIMIT {int(wanted)}", params)]
        rowids = found[offset(skip):offset(skip) + limit]
        if not rowids:
            return [], len(found)
        by_rowid = {row[0]: row for row in self.database.all(
            f"SELECT rowid, {self.table.select} FROM items WHERE rowid IN "
            f"({', '.join('?' * len(rowids))})", rowids)}
        return [self.table.document(key, by_rowid[key][1:]) for key in rowids], len(found)

    def changes(self, source_url: str, since_seq: int, until_seq: int = HEAD_SEQ) -> dict[str, int]:
        rows = self.database.all(
            "SELECT CASE WHEN before.rowid IS NULL THEN "
            "(CASE WHEN item.deleted THEN NULL ELSE 'created' END) "
            "WHEN item.deleted THEN 'deleted' "
            "WHEN item.retired AND NOT before.retired THEN 'retired' ELSE 'updated' END AS change, "
            "count(*) FROM items AS item INDEXED BY items_seq "
            "LEFT JOIN items AS before INDEXED BY items_url ON before.url = item.url "
            "AND before.seq <= ? AND before.sup > ? AND before.deleted = 0 "
            "WHERE item.source = ? AND item.seq > ? AND item.seq <= ? AND item.sup > ? "
            "GROUP BY change",
            (since_seq, since_seq, source_url, since_seq, until_seq, until_seq))
        counts = dict.fromkeys(CHANGES, 0)
        counts.update({change: int(count) for change, count in rows if change is not None})
        return counts

    def linked_mappings(self, concept_url: str, end: str, source_url: str | None = None,
                        seq: int = HEAD_SEQ, limit: int = 1000) -> list[Document]:
        column, index = {"from": ("from_concept", "items_from"),
                         "to": ("to_concept", "items_to")}[end]
        clause, params = f"{column} = ? AND deleted = 0", [concept_url]  # type: tuple[str, list[Any]]
        if source_url is not None:
            clause += " AND source = ?"
            params.append(source_url)
        if source_url is None or seq >= HEAD_SEQ:
            clause += " AND sup = ?"
            params.append(LIVE)
        else:
            clause += " AND sup > ? AND seq <= ?"
            params.extend((seq, seq))
        return self._documents(f"{self.select} INDEXED BY {index} WHERE {clause} "
                               f"ORDER BY source, id LIMIT {int(limit)}", params)

    def scan_checksum(self, source_url: str, seq: int) -> str:
        clause, params = self._where(ContentQuery(source_url, seq))
        return checksum_of(self.database.execute(f"SELECT url, seq FROM items WHERE {clause}",
                                                 params))

    def head_checksum(self, source_url: str) -> str:
        row = self.database.one("SELECT content_checksum FROM sources WHERE _id = ?",
                                (source_url,))
        return str(row[0]) if row else base.EMPTY_CHECKSUM

    def recompute_checksums(self) -> None:
        for (url,) in self.database.all("SELECT _id FROM sources ORDER BY _id"):
            checksum = self.scan_checksum(url, HEAD_SEQ)
            with self.database.transaction() as connection:
                connection.execute("UPDATE sources SET content_checksum = ? WHERE _id = ?",
                                   (checksum, url))

    def mapping_for_key(self, key: str) -> str | None:
        row = self.database.one("SELECT mapping_id FROM mapping_keys WHERE _id = ?", (key,))
        return str(row[0]) if row else None

    def set_mapping_key(self, key: str, source_url: str, mapping_id: str | None) -> None:
        with self.database.transaction() as connection:
            if mapping_id is None:
                connection.execute("DELETE FROM mapping_keys WHERE _id = ?", (key,))
            else:
                connection.execute("INSERT OR REPLACE INTO mapping_keys (_id, doc, source, "
                                   "mapping_id) VALUES (?, '{}', ?, ?)",
                                   (key, source_url, mapping_id))

    def delete_for_source(self, source_url: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM items WHERE source = ?", (source_url,))
            connection.execute("DELETE FROM mapping_keys WHERE source = ?", (source_url,))

    def dump(self) -> Iterator[Document]:
        yield from self.table.dump()
        after = ""
        while True:
            rows = self.database.all("SELECT _id, source, mapping_id FROM mapping_keys "
                                     "WHERE _id > ? ORDER BY _id LIMIT 1000", (after,))
            for key, source, mapping_id in rows:
                yield {"mapping_key": key, "source": source, "mapping_id": mapping_id}
            if len(rows) < 1000:
                return
            after = rows[-1][0]

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        items: list[Document] = []
        for document in documents:
            count += 1
            if "mapping_key" in document:
                self.set_mapping_key(document["mapping_key"], document["source"],
                                     document["mapping_id"])
                continue
            items.append({key: value for key, value in document.items() if key != "pending"})
            if len(items) >= 1000:
                self.table.load(items)
                items = []
        self.table.load(items)
        return count

