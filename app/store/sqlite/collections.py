"""SQLite repositories of collections: their references and their entries.

An entry write is one transaction, as an item write is: it allocates the collection's next seq,
supersedes the live entry, inserts the new one and updates the collection's HEAD checksum and
counts, so a version cut (which reads seq, checksum and counts from one row) never gains an entry
afterwards. Entries keep no document: reads join `items` on (url, item_seq) through `items_url`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from ... import model
from ...model import (
    COLLECTION_TYPE,
    HEAD_SEQ,
    LIVE,
    ContentQuery,
    DiffKey,
    Document,
    add_checksum,
    checksum_of,
    checksum_term,
    count_item,
)
from .. import interfaces
from ..base import StaleHead, keyset_batches, offset, page_end
from .content import Items, diff_range, filter_clauses, like, recompute_head_totals
from .db import DocTable, SqliteDatabase, dumps, loads

DIFF_KEY = "e.updated_on, e.type, e.url"  # the order of a collection's diff (entries_diff)

REFERENCE_COLUMNS = ("collection", "expression", "url", "seq", "sup")


def reference_key(reference: Document) -> str:
    """The `_id` of a reference version: its collection, expression and seq."""
    return f"{reference['collection']}\t{reference['expression']}\t{reference['seq']}"


def at_clause(seq: int, alias: str = "") -> tuple[str, list[Any]]:
    """SQL for "the version at `seq`" of seq/sup versioned rows."""
    if seq >= HEAD_SEQ:
        return f"{alias}sup = ?", [LIVE]
    return f"{alias}sup > ? AND {alias}seq <= ?", [seq, seq]


def _allocate(connection: Any, collection_url: str, count: int) -> int:
    """Take `count` seqs of a collection; return the first (inside the caller's transaction)."""
    row = connection.execute("UPDATE sources SET seq = seq + ? WHERE _id = ? RETURNING seq",
                             (count, collection_url)).fetchone()
    if row is None:
        raise KeyError(collection_url)
    return int(row[0]) - count + 1


class References(interfaces.References):
    """`collection_references`: one row per reference version."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "collection_references", REFERENCE_COLUMNS,
                              derive_id=reference_key)
        self.select = f"SELECT rowid, {self.table.select} FROM collection_references"

    def _documents(self, sql: str, params: Iterable[Any]) -> list[Document]:
        return [self.table.document(row[0], row[1:]) for row in self.database.all(sql, params)]

    def add(self, collection_url: str, references: list[Document]) -> int:
        if not references:
            return 0
        with self.database.transaction() as connection:
            seq = _allocate(connection, collection_url, len(references))
            rows = []
            for number, reference in enumerate(references):
                rows.append(self.table.row(dict(reference, collection=collection_url,
                                                seq=seq + number, sup=LIVE)))
            connection.executemany(self.table.insert_sql, rows)
        return seq + len(references) - 1

    def remove(self, collection_url: str, expressions: list[str]) -> list[Document]:
        with self.database.transaction() as connection:
            found = self.live(collection_url, expressions)
            if not found:
                return []
            seq = _allocate(connection, collection_url, len(found))
            ended = []
            for number, expression in enumerate(sorted(found)):
                reference = found[expression]
                connection.execute("UPDATE collection_references SET sup = ? WHERE collection = ? "
                                   "AND expression = ? AND seq = ?",
                                   (seq + number, collection_url, expression, reference["seq"]))
                ended.append(dict(reference, sup=seq + number))
        return ended

    def live(self, collection_url: str, expressions: Iterable[str]) -> dict[str, Document]:
        found: dict[str, Document] = {}
        wanted = list(dict.fromkeys(expressions))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for reference in self._documents(
                    f"{self.select} INDEXED BY references_expression WHERE collection = ? AND "
                    f"expression IN ({', '.join('?' * len(chunk))}) AND sup = ?",
                    [collection_url, *chunk, LIVE]):
                found[reference["expression"]] = reference
        return found

    def bringing(self, collection_url: str, url: str) -> list[Document]:
        return self._documents(f"{self.select} INDEXED BY references_url WHERE collection = ? "
                               "AND url = ? AND sup = ?", (collection_url, url, LIVE))

    def _where(self, collection_url: str, seq: int, q: str | None) -> tuple[str, list[Any]]:
        at, params = at_clause(seq)
        clause = f"collection = ? AND {at}"
        params = [collection_url, *params]
        if q:
            clause += " AND expression LIKE ? ESCAPE '\\'"
            params.append(like(q))
        return clause, params

    def page(self, collection_url: str, seq: int, q: str | None, skip: int,
             limit: int) -> model.DocumentPage:
        clause, params = self._where(collection_url, seq, q)
        index = "references_head" if seq >= HEAD_SEQ else "references_expression"
        page = self._documents(f"{self.select} INDEXED BY {index} WHERE {clause} "
                               f"ORDER BY expression LIMIT {int(limit)} OFFSET {offset(skip)}",
                               params)
        row = self.database.one(f"SELECT count(*) FROM collection_references INDEXED BY {index} "
                                f"WHERE {clause}", params)
        return page, int(row[0]) if row else 0

    def iter_at(self, collection_url: str, seq: int,
                batch_size: int = 1000) -> Iterator[Document]:
        clause, params = self._where(collection_url, seq, None)
        index = "references_head" if seq >= HEAD_SEQ else "references_expression"
        return keyset_batches(lambda after: self._documents(
            f"{self.select} INDEXED BY {index} WHERE {clause} AND expression > ? "
            f"ORDER BY expression LIMIT {int(batch_size)}", [*params, after]),
            lambda reference: reference["expression"], "", batch_size)

    def delete_for_collection(self, collection_url: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM collection_references WHERE collection = ?",
                               (collection_url,))

    def dump(self) -> Iterator[Document]:
        return self.table.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.table.load(documents)


ENTRY_COLUMNS = ("collection", "url", "seq", "sup", "type", "item_id", "source", "item_seq",
                 "deleted", "retired", "follow", "updated_on")
ENTRY_INSERT = (f"INSERT INTO collection_entries ({', '.join(ENTRY_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})")
ENTRY_REPLACE = ENTRY_INSERT.replace("INSERT", "INSERT OR REPLACE", 1)
# An entry joined with the item version it names: the item's columns, then the entry's.
JOINED = ("SELECT items.rowid, {items}, e.updated_on, e.seq, e.deleted, e.retired "
          "FROM collection_entries AS e INDEXED BY {index} "
          "JOIN items ON items.url = e.url AND items.seq = e.item_seq")


def entry_row(entry: Document) -> tuple[Any, ...]:
    """The columns of an entry document, in ENTRY_COLUMNS order."""
    values = dict(entry, item_id=entry["id"])
    return tuple(int(bool(values[name])) if name in ("deleted", "retired", "follow")
                 else values[name] for name in ENTRY_COLUMNS)


def entry_document(row: tuple[Any, ...]) -> Document:
    """An entry row (ENTRY_COLUMNS) as its document."""
    entry = dict(zip(ENTRY_COLUMNS, row, strict=True))
    entry["id"] = entry.pop("item_id")
    for name in ("deleted", "retired", "follow"):
        entry[name] = bool(entry[name])
    entry["_id"] = f"{entry['collection']}\t{entry['url']}\t{entry['seq']}"
    return entry


class CollectionEntries(interfaces.CollectionEntries):
    """`collection_entries`: one row per entry version, joined with `items` when read."""

    def __init__(self, database: SqliteDatabase, items: Items) -> None:
        self.database = database
        self.items = items
        self.item_columns = ", ".join(f"items.{name}" for name in items.table.select.split(", "))

    # --- entries --------------------------------------------------------------------------
    def _entry(self, sql: str, params: Iterable[Any]) -> Document | None:
        row = self.database.one(sql, params)
        return None if row is None else entry_document(row)

    def head(self, collection_url: str, url: str) -> Document | None:
        return self._entry(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM collection_entries INDEXED BY "
                           "entries_url WHERE collection = ? AND url = ? AND sup = ?",
                           (collection_url, url, LIVE))

    def write(self, collection_url: str, entries: list[tuple[Document, int | None]]) -> int:
        if not entries:
            return 0
        with self.database.transaction() as connection:
            first = _allocate(connection, collection_url, len(entries))
            checksum, counts_json = connection.execute(
                "SELECT content_checksum, counts FROM sources WHERE _id = ?",
                (collection_url,)).fetchone()
            counts = loads(counts_json)
            newest = ""
            for number, (entry, previous_seq) in enumerate(entries):
                seq = first + number
                url = entry["url"]
                live = connection.execute(
                    "SELECT seq, deleted, retired, type, item_seq FROM collection_entries "
                    "INDEXED BY entries_url WHERE collection = ? AND url = ? AND sup = ?",
                    (collection_url, url, LIVE)).fetchone()
                if (live[0] if live else None) != previous_seq:
                    raise StaleHead(url)
                if live is not None:
                    connection.execute("UPDATE collection_entries SET sup = ? WHERE collection = ? "
                                       "AND url = ? AND seq = ?", (seq, collection_url, url, live[0]))
                    if not live[1]:
                        checksum = add_checksum(checksum, -checksum_term(url, live[4]))
                    count_item(counts, {"deleted": live[1], "retired": live[2], "type": live[3]},
                               -1)
                connection.execute(ENTRY_INSERT, entry_row(dict(entry, collection=collection_url,
                                                                seq=seq, sup=LIVE)))
                if not entry["deleted"]:
                    checksum = add_checksum(checksum, checksum_term(url, entry["item_seq"]))
                count_item(counts, entry, 1)
                newest = max(newest, entry["updated_on"])
            connection.execute("UPDATE sources SET last_updated = max(last_updated, ?), "
                               "content_checksum = ?, counts = ? WHERE _id = ?",
                               (newest, checksum, dumps(counts), collection_url))
        return first + len(entries) - 1

    def set_follow(self, collection_url: str, url: str, follow: bool) -> None:
        with self.database.transaction() as connection:
            connection.execute("UPDATE collection_entries SET follow = ? WHERE collection = ? AND "
                               "url = ? AND sup = ?", (int(follow), collection_url, url, LIVE))

    def followers(self, url: str) -> list[Document]:
        entries = [entry_document(row) for row in self.database.all(
            f"SELECT {', '.join(ENTRY_COLUMNS)} FROM collection_entries INDEXED BY "
            "entries_followers WHERE url = ? AND sup = ? AND follow = 1", (url, LIVE))]
        return sorted(entries, key=lambda entry: entry["collection"])

    def holding(self, source_url: str) -> list[str]:
        rows = self.database.all(
            "SELECT DISTINCT e.collection FROM collection_entries AS e INDEXED BY entries_source "
            "WHERE e.source = ? AND e.deleted = 0 AND (e.sup = ? OR EXISTS (SELECT 1 FROM "
            "versions AS v INDEXED BY versions_source WHERE v.source = e.collection "
            "AND v.seq >= e.seq AND v.seq < e.sup)) ORDER BY e.collection", (source_url, LIVE))
        return [row[0] for row in rows]

    def sources_held(self, collection_url: str) -> list[str]:
        return [row[0] for row in self.database.all(
            "SELECT DISTINCT source FROM collection_entries INDEXED BY entries_url "
            "WHERE collection = ?", (collection_url,))]

    def recompute_checksums(self) -> None:
        recompute_head_totals(self.database, COLLECTION_TYPE, "collection_entries", "collection",
                              self.scan_checksum)

    def delete_for_collection(self, collection_url: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM collection_entries WHERE collection = ?",
                               (collection_url,))

    def dump(self) -> Iterator[Document]:
        after = 0
        while True:
            rows = self.database.all(f"SELECT rowid, {', '.join(ENTRY_COLUMNS)} FROM "
                                     "collection_entries WHERE rowid > ? ORDER BY rowid LIMIT 1000",
                                     (after,))
            yield from (entry_document(row[1:]) for row in rows)
            if len(rows) < 1000:
                return
            after = rows[-1][0]

    def load(self, documents: Iterable[Document]) -> int:
        count = 0
        batch: list[tuple[Any, ...]] = []
        for document in documents:
            batch.append(entry_row(document))
            count += 1
            if len(batch) >= 1000:
                self._load(batch)
                batch = []
        self._load(batch)
        return count

    def _load(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            with self.database.transaction() as connection:
                connection.executemany(ENTRY_REPLACE, rows)

    # --- content reads --------------------------------------------------------------------
    def _where(self, query: ContentQuery, diff_order: bool = False) -> tuple[str, list[Any]]:
        """As Items._where: in diff order one type is a filter (`+e.type`)."""
        if not isinstance(query.source, str):
            raise ValueError("a collection's content is read one collection at a time")
        clauses = ["e.collection = ?"]
        params: list[Any] = [query.source]
        if len(query.types) == 1:
            clauses.append("+e.type = ?" if diff_order else "e.type = ?")
        else:
            clauses.append(f"e.type IN ({', '.join('?' * len(query.types))})")
        params.extend(query.types)
        at, at_params = at_clause(query.seq, "e.")
        clauses.append(at)
        params.extend(at_params)
        if not query.include_deleted:
            clauses.append("e.deleted = 0")
        if not query.include_retired:
            clauses.append("e.retired = 0")
        if query.updated_since is not None:
            clauses.append("e.updated_on >= ?")
            params.append(query.updated_since)
        return " AND ".join(clauses), params

    def _joined(self, index: str) -> str:
        return JOINED.format(items=self.item_columns, index=index)

    def _documents(self, sql: str, params: Iterable[Any]) -> list[Document]:
        return self._rows(self.database.all(sql, params))

    def _rows(self, rows: Iterable[tuple[Any, ...]]) -> list[Document]:
        """Joined rows (JOINED's columns) as item documents with their entries' state."""
        found = []
        columns = len(self.items.table.columns) + 1
        for row in rows:
            item = self.items.table.document(row[0], row[1:1 + columns])
            updated_on, seq, deleted, retired = row[1 + columns:]
            item.update(entry_updated_on=updated_on, entry_seq=seq, deleted=bool(deleted),
                        retired=bool(retired))
            if deleted:
                item.update(updated_on=updated_on, data={})
            found.append(item)
        return found

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        clause, params = self._where(query)
        index = "entries_head" if query.seq >= HEAD_SEQ and not query.include_deleted \
            and not query.include_retired else "entries_at"
        sql = f"{self._joined(index)} WHERE {clause} ORDER BY e.type, e.url"
        if limit:
            sql += f" LIMIT {int(limit)} OFFSET {offset(skip)}"
        return self._documents(sql, params)

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        """As Items.search, by url: the entries in url order, narrowed by their item versions'
        fields; one walk finds the matches' urls up to what the page and the count need."""
        query = replace(query, types=query.types[:1])
        clause, params = self._where(query)
        filters, filter_params = filter_clauses(query.filters)
        where = " AND ".join([clause, *filters])
        index = "entries_head" if query.seq >= HEAD_SEQ and not query.include_deleted \
            and not query.include_retired else "entries_at"
        wanted = max(count_limit, offset(skip) + limit) + 1
        found = [row[0] for row in self.database.all(
            f"SELECT e.url FROM collection_entries AS e INDEXED BY {index} JOIN items ON "
            f"items.url = e.url AND items.seq = e.item_seq WHERE {where} ORDER BY e.url "
            f"LIMIT {min(int(wanted), 2**62)}", [*params, *filter_params])]
        urls = found[offset(skip):offset(skip) + limit]
        if not urls:
            return [], len(found)
        page = self._documents(f"{self._joined(index)} WHERE {clause} AND e.url IN "
                               f"({', '.join('?' * len(urls))}) ORDER BY e.url",
                               [*params, *urls])
        return page, len(found)

    def count(self, query: ContentQuery) -> int:
        clause, params = self._where(query)
        row = self.database.one(f"SELECT count(*) FROM collection_entries AS e WHERE {clause}",
                                params)
        return int(row[0]) if row else 0

    def diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
             limit: int) -> list[Document]:
        clause, params = self._where(query, diff_order=True)
        clause += diff_range(params, after, until, DIFF_KEY)
        return self._documents(f"{self._joined('entries_diff')} WHERE {clause} "
                               f"ORDER BY e.updated_on, e.type, e.url LIMIT {int(limit)}", params)

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]:
        clause, params = self._where(query, diff_order=True)
        clause += diff_range(params, after, until, DIFF_KEY)
        return page_end((DiffKey(*row) for row in self.database.execute(
            "SELECT e.updated_on, e.type, e.url FROM collection_entries AS e INDEXED BY "
            f"entries_diff WHERE {clause} ORDER BY e.updated_on, e.type, e.url "
            f"LIMIT {int(limit) + 1}", params)), limit)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        clause, params = self._where(replace(query, types=query.types[:1]))
        return keyset_batches(lambda after: self._documents(
            f"{self._joined('entries_at')} WHERE {clause} AND e.url > ? ORDER BY e.url "
            f"LIMIT {int(batch_size)}", [*params, after]), lambda item: item["url"], "",
            batch_size)

    def newest(self, query: ContentQuery) -> Document | None:
        clause, params = self._where(query, diff_order=True)
        found = self._documents(f"{self._joined('entries_diff')} WHERE {clause} ORDER BY "
                                "e.updated_on DESC, e.type DESC, e.url DESC LIMIT 1", params)
        return found[0] if found else None

    def find(self, collection_url: str, seq: int, item_type: str,
             item_id: str) -> list[Document]:
        clause, params = self._where(ContentQuery(collection_url, seq, (item_type,),
                                                  include_deleted=True))
        found = self._documents(f"{self._joined('entries_id')} WHERE {clause} AND "
                                "e.item_id = ?", [*params, item_id])
        return sorted(found, key=lambda item: item["url"])  # one per source: a few

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        clause, params = self._where(ContentQuery(source_url, seq, ("Mapping",),
                                                  include_retired=include_retired))
        ends = ["from_concept_url"] + (["to_concept_url"] if inverse else [])
        found: dict[str, Document] = {}
        for column in ends:
            index = "items_from" if column == "from_concept_url" else "items_to"
            for item in self._documents(
                    f"SELECT items.rowid, {self.item_columns}, e.updated_on, e.seq, e.deleted, "
                    f"e.retired FROM items INDEXED BY {index} JOIN collection_entries AS e "
                    "INDEXED BY entries_url ON e.url = items.url AND e.item_seq = items.seq "
                    f"WHERE items.{column} = ? AND {clause}", [concept_url, *params]):
                found[item["url"]] = item
        return [found[key] for key in sorted(found)]

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]:
        # the collection's seq range from entries_seq; the entry before from entries_url
        sql = (f"{self._joined('entries_seq')} WHERE e.collection = ? AND e.seq > ? AND "
               "e.seq <= ? AND e.sup > ? AND e.type = ? AND e.deleted = ? ORDER BY e.seq "
               f"LIMIT {int(batch_size)}").replace(
            " FROM collection_entries AS e", ", (SELECT CASE WHEN before.retired THEN 'retired' "
            "ELSE 'active' END FROM collection_entries AS before INDEXED BY entries_url WHERE "
            "before.collection = e.collection AND before.url = e.url AND before.seq <= ? AND "
            "before.sup > ? AND before.deleted = 0) FROM collection_entries AS e", 1)

        def read(after: int) -> list[Document]:
            rows = self.database.all(sql, (since_seq, since_seq, source_url, after, until_seq,
                                           until_seq, item_type, int(deleted)))
            found = self._rows([row[:-1] for row in rows])
            for item, row in zip(found, rows, strict=True):
                item["before"] = row[-1]
            return found

        return keyset_batches(read, lambda item: item["entry_seq"], since_seq, batch_size)

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int:
        row = self.database.one("SELECT count(*) FROM collection_entries INDEXED BY entries_seq "
                                "WHERE collection = ? AND seq > ? AND seq <= ? AND sup > ?",
                                (source_url, since_seq, until_seq, until_seq))
        return int(row[0]) if row else 0

    def scan_checksum(self, source_url: str, seq: int) -> str:
        clause, params = self._where(ContentQuery(source_url, seq))
        return checksum_of(self.database.execute(
            f"SELECT e.url, e.item_seq FROM collection_entries AS e WHERE {clause}", params))

    def head_checksum(self, source_url: str) -> str:
        row = self.database.one("SELECT content_checksum FROM sources WHERE _id = ?",
                                (source_url,))
        return str(row[0]) if row else model.EMPTY_CHECKSUM

    def head_counts(self, source_url: str) -> model.Counts | None:
        row = self.database.one("SELECT counts FROM sources WHERE _id = ?", (source_url,))
        return loads(row[0]) if row else None
