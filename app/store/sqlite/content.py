"""SQLite repositories of accounts and content: users, orgs, console sessions, sources, versions
and items.

An item write is one transaction: it allocates the source's next seq, supersedes the live version,
inserts the new one and updates HEAD's checksum, so nothing is ever half written and a version
cut (which reads seq and checksum in one row) never gains an item afterwards.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

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
    add_checksum,
    checksum_of,
    checksum_term,
    count_item,
    version_url,
)
from .. import base, interfaces
from ..base import StaleHead, keyset_batches, offset, page_end
from ..records import RecordedSources, RecordedVersions
from .db import DocTable, SqliteDatabase, dumps, loads


def survives_json(text: str) -> bool:
    """Whether `text` appears unchanged in the JSON of a document that holds it (so a LIKE on
    the whole document can pre-select rows): JSON escapes quotes, backslashes and controls."""
    return not any(char in '"\\' or ord(char) < 0x20 for char in text)


class DocumentRepository(interfaces.DocumentRepository):
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


class Users(DocumentRepository, interfaces.Users):
    """`users` and `tokens` (sha256 of each token, never the token)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "users")

    def search(self, q: str | None, skip: int, limit: int) -> tuple[list[Document], int]:
        clause, params = text_clause(q, ("_id", "json_extract(doc, '$.name')"))
        return self.table.page(clause, params, "_id", skip, limit)

    def page_of(self, usernames: list[str], skip: int,
                limit: int) -> tuple[list[Document], int]:
        marks = ", ".join("?" * len(usernames))
        return self.table.page(f"_id IN ({marks})" if usernames else "0", usernames, "_id", skip,
                               limit)

    def add_token(self, token: Document) -> None:
        try:
            with self.database.transaction() as connection:
                connection.execute(f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ({TOKEN_MARKS})",
                                   token_row(token))
        except sqlite3.IntegrityError as exc:
            raise base.DuplicateKey("token") from exc

    def token(self, token_hash: str) -> Document | None:
        row = self.database.one(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?",
                                (token_hash,))
        return token_document(row) if row else None

    def token_of(self, username: str, token_id: str) -> Document | None:
        row = self.database.one(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE username = ? AND "
                                "id = ?", (username, token_id))
        return token_document(row) if row else None

    def tokens_of(self, username: str, include_revoked: bool) -> list[Document]:
        state = "" if include_revoked else " AND revoked_on IS NULL"
        return [token_document(row) for row in self.database.all(
            f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE username = ?{state} "
            "ORDER BY created_on DESC, id DESC", (username,))]

    def update_token(self, token_hash: str, changes: Document) -> None:
        with self.database.transaction() as connection:
            row = connection.execute(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?",
                                     (token_hash,)).fetchone()
            if row is not None:
                token = dict(token_document(row), **changes)
                connection.execute(f"REPLACE INTO tokens ({TOKEN_COLUMNS}) VALUES "
                                   f"({TOKEN_MARKS})", token_row(token))

    def touch_token(self, token_hash: str, used_on: str, before: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("UPDATE tokens SET last_used_on = ? WHERE hash = ? AND "
                               "(last_used_on IS NULL OR last_used_on < ?)",
                               (used_on, token_hash, before))

    def bootstrap_tokens(self) -> list[Document]:
        return [token_document(row) for row in self.database.all(
            f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE bootstrap = 1 AND revoked_on IS NULL")]

    def dump(self) -> Iterator[Document]:
        for user in self.table.dump():
            tokens = self.database.all(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE username = ? "
                                       "ORDER BY hash", (user["_id"],))
            yield dict(user, tokens=[token_document(row) for row in tokens])

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        for user in documents:
            tokens = user.pop("tokens", [])
            self.table.load([user])
            with self.database.transaction() as connection:
                for token in tokens:
                    connection.execute(f"REPLACE INTO tokens ({TOKEN_COLUMNS}) VALUES "
                                       f"({TOKEN_MARKS})", token_row(dict(
                                           token, _id=token.get("_id") or token["hash"],
                                           username=user["_id"])))
            count += 1
        return count


# A token's row: its sha256 (`_id` of its record), the columns lookups and lists read, and the
# rest of its record (prefix, label, who issued it) as JSON in `doc`.
TOKEN_KEYS = ("username", "id", "created_on", "expires_on", "last_used_on", "revoked_on",
              "bootstrap")
TOKEN_COLUMNS = ", ".join(("hash", *TOKEN_KEYS, "doc"))
TOKEN_MARKS = ", ".join("?" * (len(TOKEN_KEYS) + 2))


def token_row(token: Document) -> tuple[Any, ...]:
    """A token record as the values of TOKEN_COLUMNS."""
    rest = {key: value for key, value in token.items() if key not in ("_id", *TOKEN_KEYS)}
    return (token["_id"], *(int(bool(token.get(key))) if key == "bootstrap" else token.get(key)
                            for key in TOKEN_KEYS), dumps(rest))


def token_document(row: tuple[Any, ...]) -> Document:
    """A row of TOKEN_COLUMNS as a token record."""
    token: Document = {"_id": row[0], **dict(zip(TOKEN_KEYS, row[1:-1], strict=True))}
    token["bootstrap"] = bool(token["bootstrap"])
    token.update(loads(row[-1] or "{}"))
    return token


class Orgs(DocumentRepository, interfaces.Orgs):
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

    def remove_member(self, org_id: str, username: str) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute("DELETE FROM org_members WHERE org = ? AND username = ?",
                                      (org_id, username))
        return done.rowcount == 1

    def for_member(self, username: str) -> list[str]:
        return [row[0] for row in self.database.all(
            "SELECT org FROM org_members WHERE username = ? ORDER BY org", (username,))]

    def is_public(self, org_id: str) -> bool:
        return self.database.one("SELECT 1 FROM orgs WHERE _id = ? AND public_access IS NOT "
                                 "'None'", (org_id,)) is not None

    def search(self, q: str | None, member: str | None, visible_to: Visibility | None,
               skip: int, limit: int) -> tuple[list[Document], int]:
        clauses: list[str] = []
        params: list[Any] = []
        text, text_params = text_clause(q, ("_id", "json_extract(doc, '$.name')"))
        if text:
            clauses.append(text)
            params.extend(text_params)
        if member is not None:
            clauses.append("_id IN (SELECT org FROM org_members WHERE username = ?)")
            params.append(member)
        if visible_to is not None:
            marks = ", ".join("?" * len(visible_to.orgs))
            clauses.append("(public_access IS NOT 'None'"
                           + (f" OR _id IN ({marks}))" if marks else ")"))
            params.extend(sorted(visible_to.orgs))
        orgs, total = self.table.page(" AND ".join(clauses), params, "_id", skip, limit)
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


def text_clause(q: str | None, expressions: tuple[str, ...]) -> tuple[str, list[Any]]:
    """SQL for "`q`, taken literally and in any case, is in one of these columns"."""
    if not q:
        return "", []
    pattern = like(q)
    clause = " OR ".join(f"{expression} LIKE ? ESCAPE '\\'" for expression in expressions)
    return f"({clause})", [pattern] * len(expressions)


def like(text: str, prefix: str = "%", suffix: str = "%") -> str:
    """A LIKE pattern matching `text` literally (with ESCAPE '\\')."""
    return prefix + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + suffix


NAMES = "json_each(items.doc, '$.data.names')"


def text_match(text: str) -> tuple[str, list[Any]]:
    """SQL for "`text` (any case, taken literally) is in the id, a name or (mappings) the map
    type or an end": the whole document is matched first (cheap) where that can tell, the
    parsed names and fields only where it found something."""
    pattern = like(text)
    fields = (f"EXISTS (SELECT 1 FROM {NAMES} AS n WHERE json_extract(n.value, '$.name') "
              "LIKE ? ESCAPE '\\') OR json_extract(doc, '$.data.map_type') LIKE ? ESCAPE '\\' "
              "OR from_concept_url LIKE ? ESCAPE '\\' OR to_concept_url LIKE ? ESCAPE '\\' "
              "OR json_extract(doc, '$.data.to_concept_code') LIKE ? ESCAPE '\\'")
    if survives_json(text):
        return (f"(id LIKE ? ESCAPE '\\' OR (doc LIKE ? ESCAPE '\\' AND ({fields})))",
                [pattern] * 7)
    return f"(id LIKE ? ESCAPE '\\' OR {fields})", [pattern] * 6


def filter_clauses(filters: model.ItemFilters) -> tuple[list[str], list[Any]]:
    """SQL for OCL's search parameters over `items` (see model.ItemFilters)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (("concept_class", filters.concept_class),
                           ("datatype", filters.datatype),
                           ("json_extract(doc, '$.data.map_type')", filters.map_type)):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    if filters.locale:
        clauses.append(f"EXISTS (SELECT 1 FROM {NAMES} AS n WHERE lower(json_extract(n.value, "
                       f"'$.locale')) IN ({', '.join('?' * len(filters.locale))}))")
        params.extend(value.lower() for value in filters.locale)
    if filters.q:
        text, text_params = text_match(filters.q)
        clauses.append(text)
        params.extend(text_params)
    for column, kind, value in filters.ends():
        code = column.replace("_url", "_code")
        if kind == "concept":
            clauses.append(f"({column} LIKE ? ESCAPE '\\' OR "
                           f"json_extract(doc, '$.data.{code}') = ?)")
            params.extend((like(value, "%/concepts/", "/"), value))
        elif kind == "source":
            source_column = column.replace("_concept_url", "_source_url")
            clauses.append(f"({column} LIKE ? ESCAPE '\\' OR "
                           f"json_extract(doc, '$.data.{source_column}') LIKE ? ESCAPE '\\')")
            params.extend((like(value, "%/sources/", "/concepts/%"), like(value, "%/sources/", "/")))
        else:
            clauses.append(f"({column} LIKE ? ESCAPE '\\' OR {column} LIKE ? ESCAPE '\\')")
            params.extend((like(value, "/orgs/", "/%"), like(value, "/users/", "/%")))
    return clauses, params


class ConsoleSessions(interfaces.ConsoleSessions):
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


# A repository anyone may see: public itself, and its owner too (a user, or an org that is not
# private: a private org hides its repositories, whatever their own `public_access`). The org is
# read by its primary key, once per repository the list considers.
PUBLIC_REPOSITORY = ("(public_access IN ('View', 'Edit') AND (owner_type IS NOT 'Organization' "
                     "OR EXISTS (SELECT 1 FROM orgs WHERE orgs._id = sources.owner "
                     "AND orgs.public_access IS NOT 'None')))")


def visibility_clause(visible_to: Visibility | None) -> tuple[str, tuple[Any, ...]]:
    """SQL for "a repository this caller may see" (public with a public owner, theirs, or
    their orgs')."""
    if visible_to is None:
        return "", ()
    parts = [PUBLIC_REPOSITORY]
    params: list[Any] = []
    if visible_to.username:
        parts.append("(owner_type = 'User' AND owner = ?)")
        params.append(visible_to.username)
    if visible_to.orgs:
        marks = ", ".join("?" * len(visible_to.orgs))
        parts.append(f"(owner_type = 'Organization' AND owner IN ({marks}))")
        params.extend(sorted(visible_to.orgs))
    return "(" + " OR ".join(parts) + ")", tuple(params)


class Sources(RecordedSources):
    """`sources`: metadata in `doc`; seq, counters, lastUpdated and HEAD's checksum in columns."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "sources", ("owner_url", "owner", "owner_type",
                                                    "public_access", "seq", "mapping_counter",
                                                    "last_updated", "content_checksum",
                                                    "repo_type"),
                              json_columns=("counts",))
        self.documents = self.table

    def stored(self, record: Source) -> Document:
        # HEAD's checksum and counts, kept with every write, start from empty content
        return dict(super().stored(record), content_checksum=model.EMPTY_CHECKSUM,
                    counts=model.empty_counts())

    def next_mapping_number(self, url: str) -> int:
        with self.database.transaction() as connection:
            row = connection.execute("UPDATE sources SET mapping_counter = mapping_counter + 1 "
                                     "WHERE _id = ? RETURNING mapping_counter", (url,)).fetchone()
        return int(row[0])

    def cut_state(self, url: str) -> model.CutState:
        row = self.database.one("SELECT seq, last_updated, content_checksum, counts FROM sources "
                                "WHERE _id = ?", (url,))
        if row is None:
            return model.CutState(0, None, model.EMPTY_CHECKSUM, model.empty_counts())
        return model.CutState(int(row[0]), row[1] or None, row[2], loads(row[3]))

    def search(self, owner_url: str | None, visible_to: Visibility | None,
               filters: model.RepoFilters, skip: int,
               limit: int) -> tuple[builtins.list[Source], int]:
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, value in (("owner_url", owner_url), ("owner", filters.owner),
                              ("owner_type", filters.owner_type),
                              ("repo_type", filters.repo_type),
                              ("json_extract(doc, '$.custom_validation_schema')",
                               filters.custom_validation_schema)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        visible, visible_params = visibility_clause(visible_to)
        if visible:
            clauses.append(visible)
            params.extend(visible_params)
        text, text_params = text_clause(filters.q, tuple(
            f"json_extract(doc, '$.{name}')" for name in ("id", "short_code", "name",
                                                          "full_name")))
        if text:
            clauses.append(text)
            params.extend(text_params)
        if filters.updated_since is not None:
            clauses.append("(json_extract(doc, '$.updated_on') >= ? OR last_updated >= ?)")
            params.extend((filters.updated_since, filters.updated_since))
        found, total = self.table.page(" AND ".join(clauses), params, "_id", skip, limit)
        return [self.record(document) for document in found], total

    def count_public(self, owner_url: str, repo_type: str = model.SOURCE_TYPE) -> int:
        return self.table.count(f"owner_url = ? AND repo_type = ? AND {PUBLIC_REPOSITORY}",
                                (owner_url, repo_type))


class Versions(RecordedVersions):
    """`versions` of sources, newest first by `created_on`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "versions", ("source", "created_on", "seq", "checksum"),
                              flags=("released",), json_columns=("counts",))
        self.documents = self.table

    def delete_for_source(self, source_url: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM versions WHERE source = ?", (source_url,))

    def list(self, source_url: str, released: bool | None, skip: int, limit: int,
             updated_since: str | None = None) -> tuple[builtins.list[Version], int]:
        clause = "source = ?"
        params: builtins.list[Any] = [source_url]
        if released is not None:
            clause += " AND released = ?"
            params.append(1 if released else 0)
        if updated_since is not None:
            clause += " AND json_extract(doc, '$.updated_on') >= ?"
            params.append(updated_since)
        found, total = self.table.page(clause, params, "created_on DESC, _id DESC", skip, limit)
        return [self.record(document) for document in found], total

    def all_released(self) -> Iterator[Version]:
        return (self.record(document) for document in self.table.where("released = 1"))

    def newest_released(self, skip: int, limit: int) -> builtins.list[Version]:
        return [self.record(document) for document in
                self.table.where("released = 1", (), "created_on DESC, _id DESC", skip, limit)]


ITEM_COLUMNS = ("source", "type", "id", "url", "seq", "sup", "updated_on")
ITEM_FLAGS = ("deleted", "retired")


def diff_range(params: list[Any], after: DiffKey | None, until: DiffKey | None,
               key: str) -> str:
    """The SQL that narrows a query to the diff positions after `after` and up to `until`
    (inclusive), `key` naming the columns of the order; their values go into `params`. Bounded
    on both sides, a page's scan of the diff index ends where the page does."""
    clause = ""
    for bound, operator in ((after, ">"), (until, "<=")):
        if bound is not None:
            clause += f" AND ({key}) {operator} (?, ?, ?)"
            params.extend((bound.updated_on, bound.type, bound.id))
    return clause


def recompute_head_totals(database: SqliteDatabase, repo_type: str, table: str, repo_column: str,
                          scan_checksum: Callable[[str, int], str]) -> None:
    """Bring the HEAD checksum and counts that every repository of `repo_type` keeps with each
    write in line with the live rows of `table` whose `repo_column` names it (after `db copy`):
    `items` of sources by `source`, `collection_entries` of collections by `collection`."""
    for (url,) in database.all("SELECT _id FROM sources WHERE repo_type = ? ORDER BY _id",
                               (repo_type,)):
        checksum = scan_checksum(url, HEAD_SEQ)
        counts = model.empty_counts()
        for kind, deleted, retired, number in database.all(
                f"SELECT type, deleted, retired, count(*) FROM {table} WHERE {repo_column} = ? "
                "AND sup = ? GROUP BY type, deleted, retired", (url, LIVE)):
            count_item(counts, {"type": kind, "deleted": deleted, "retired": retired}, number)
        with database.transaction() as connection:
            connection.execute("UPDATE sources SET content_checksum = ?, counts = ? WHERE _id = ?",
                               (checksum, dumps(counts), url))


class Items(interfaces.Items):
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

    def history(self, source_url: str, url: str, skip: int,
                limit: int) -> tuple[list[Document], int]:
        # items_url by name: otherwise the planner may take `source = ?` for the better bound
        # and walk the whole source
        clause = "url = ? AND source = ? AND deleted = 0"
        page = self._documents(f"{self.select} INDEXED BY items_url WHERE {clause} ORDER BY seq "
                               f"DESC LIMIT {int(limit) or -1} OFFSET {offset(skip)}",
                               (url, source_url))
        row = self.database.one(f"SELECT count(*) FROM items INDEXED BY items_url WHERE {clause}",
                                (url, source_url))
        return page, int(row[0]) if row else 0

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        query = ContentQuery(source_url, seq, ("Mapping",), include_retired=include_retired)
        clause, params = self._where(query)
        ends = [("items_from", "from_concept_url")] + ([("items_to", "to_concept_url")]
                                                        if inverse else [])
        found: dict[str, Document] = {}
        for index, column in ends:
            for item in self._documents(f"{self.select} INDEXED BY {index} WHERE {column} = ? "
                                        f"AND {clause}", [concept_url, *params]):
                found[item["id"]] = item
        return [found[key] for key in sorted(found)]

    def write(self, item: Document, previous_seq: int | None) -> int:
        url = item["url"]
        with self.database.transaction() as connection:
            live = connection.execute("SELECT seq, deleted, retired, type FROM items WHERE "
                                      "url = ? AND sup = ?", (url, LIVE)).fetchone()
            if (live[0] if live else None) != previous_seq:
                raise StaleHead(url)
            seq, checksum, counts_json = connection.execute(
                "SELECT seq + 1, content_checksum, counts FROM sources WHERE _id = ?",
                (item["source"],)).fetchone()
            counts = loads(counts_json)
            if live is not None:
                connection.execute("UPDATE items SET sup = ? WHERE url = ? AND seq = ?",
                                   (seq, url, live[0]))
                if not live[1]:
                    checksum = add_checksum(checksum, -checksum_term(url, live[0]))
                count_item(counts, {"deleted": live[1], "retired": live[2], "type": live[3]}, -1)
            stored = dict(item, _id=version_url(url, seq), seq=seq, sup=LIVE)
            connection.execute(self.table.insert_sql, self.table.row(stored))
            if not item["deleted"]:
                checksum = add_checksum(checksum, checksum_term(url, seq))
            count_item(counts, item, 1)
            connection.execute(
                "UPDATE sources SET seq = ?, last_updated = max(last_updated, ?), "
                "content_checksum = ?, counts = ? WHERE _id = ?",
                (seq, item["updated_on"], checksum, dumps(counts), item["source"]))
        return int(seq)

    @staticmethod
    def _where(query: ContentQuery, diff_order: bool = False) -> tuple[str, list[Any]]:
        """The WHERE clause of a query. In diff order (updated_on, type, id) one type is matched
        as `+type`: a filter, so the planner keeps reading items_diff in order instead of taking
        type for a constant and sorting what follows it."""
        if isinstance(query.source, str):
            clauses = ["source = ?"]
            params: list[Any] = [query.source]
        else:
            clauses = [f"source IN ({', '.join('?' * len(query.source))})" if query.source
                       else "0"]
            params = list(query.source)
        if len(query.types) == 1:
            clauses.append("+type = ?" if diff_order else "type = ?")
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
        if query.filters:
            filters, filter_params = filter_clauses(query.filters)
            clauses.extend(filters)
            params.extend(filter_params)
        return " AND ".join(clauses), params

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        clause, params = self._where(query)
        sql = f"{self.select} INDEXED BY items_id WHERE {clause} ORDER BY type, id"
        if limit:
            sql += f" LIMIT {int(limit)} OFFSET {offset(skip)}"
        return self._documents(sql, params)

    def count(self, query: ContentQuery) -> int:
        clause, params = self._where(query)
        row = self.database.one(f"SELECT count(*) FROM items WHERE {clause}", params)
        return int(row[0]) if row else 0

    def diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
             limit: int) -> list[Document]:
        clause, params = self._where(query, diff_order=True)
        clause += diff_range(params, after, until, "updated_on, type, id")
        return self._documents(f"{self.select} INDEXED BY items_diff WHERE {clause} "
                               f"ORDER BY updated_on, type, id LIMIT {int(limit)}", params)

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]:
        clause, params = self._where(query, diff_order=True)
        clause += diff_range(params, after, until, "updated_on, type, id")
        return page_end((DiffKey(*row) for row in self.database.execute(
            f"SELECT updated_on, type, id FROM items INDEXED BY items_diff WHERE {clause} "
            f"ORDER BY updated_on, type, id LIMIT {int(limit) + 1}", params)), limit)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        clause, params = self._where(replace(query, types=query.types[:1]))
        return keyset_batches(lambda after: self._documents(
            f"{self.select} INDEXED BY items_id WHERE {clause} AND id > ? ORDER BY id "
            f"LIMIT {int(batch_size)}", [*params, after]), lambda item: item["id"], "", batch_size)

    def newest(self, query: ContentQuery) -> Document | None:
        clause, params = self._where(query, diff_order=True)
        return self._one(f"{self.select} INDEXED BY items_diff WHERE {clause} "
                         "ORDER BY updated_on DESC, type DESC, id DESC LIMIT 1", params)

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        query = replace(query, types=query.types[:1])
        filters = query.filters
        clause, params = self._where(replace(query, filters=replace(filters, q=None)))
        if filters.concept_class:
            index = "items_class"
        elif filters.datatype:
            index = "items_datatype"
        else:
            index = "items_id"
        if not filters.q:
            page = self._documents(f"{self.select} INDEXED BY {index} WHERE {clause} ORDER BY id "
                                   f"LIMIT {int(limit)} OFFSET {offset(skip)}", params)
            row = self.database.one(f"SELECT count(*) FROM items WHERE {clause}", params)
            return page, int(row[0]) if row else 0
        # One walk in id order finds the matches up to what the page and the count need.
        text, text_params = text_match(filters.q)
        wanted = max(count_limit, offset(skip) + limit) + 1
        found = [row[0] for row in self.database.all(
            f"SELECT rowid FROM items INDEXED BY {index} WHERE {clause} AND {text} ORDER BY id "
            f"LIMIT {min(int(wanted), 2**62)}", [*params, *text_params])]
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

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]:
        # the seq range from items_seq; the state before from items_url, one lookup a row
        sql = (f"SELECT rowid, {self.table.select}, (SELECT CASE WHEN before.retired THEN "
               "'retired' ELSE 'active' END FROM items AS before INDEXED BY items_url WHERE "
               "before.url = items.url AND before.seq <= ? AND before.sup > ? AND "
               "before.deleted = 0) FROM items INDEXED BY items_seq WHERE source = ? AND seq > ? "
               "AND seq <= ? AND sup > ? AND type = ? AND deleted = ? ORDER BY seq "
               f"LIMIT {int(batch_size)}")

        def read(after: int) -> list[Document]:
            found = []
            for row in self.database.all(sql, (since_seq, since_seq, source_url, after, until_seq,
                                               until_seq, item_type, int(deleted))):
                item = self.table.document(row[0], row[1:-1])
                item["before"] = row[-1]
                found.append(item)
            return found

        return keyset_batches(read, lambda item: item["seq"], since_seq, batch_size)

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int:
        row = self.database.one("SELECT count(*) FROM items INDEXED BY items_seq WHERE source = ? "
                                "AND seq > ? AND seq <= ? AND sup > ?",
                                (source_url, since_seq, until_seq, until_seq))
        return int(row[0]) if row else 0

    def linked_mappings(self, concept_url: str, end: str, source_url: str | None = None,
                        seq: int = HEAD_SEQ, limit: int = 1000) -> list[Document]:
        column, index = {"from": ("from_concept_url", "items_from"),
                         "to": ("to_concept_url", "items_to")}[end]
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
        return str(row[0]) if row else model.EMPTY_CHECKSUM

    def head_counts(self, source_url: str) -> model.Counts | None:
        row = self.database.one("SELECT counts FROM sources WHERE _id = ?", (source_url,))
        return loads(row[0]) if row else None

    def recompute_checksums(self) -> None:
        recompute_head_totals(self.database, model.SOURCE_TYPE, "items", "source",
                              self.scan_checksum)

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
        for key, source, mapping_id in keyset_batches(lambda after: self.database.all(
                "SELECT _id, source, mapping_id FROM mapping_keys WHERE _id > ? ORDER BY _id "
                "LIMIT 1000", (after,)), lambda row: row[0], "", 1000):
            yield {"mapping_key": key, "source": source, "mapping_id": mapping_id}

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

