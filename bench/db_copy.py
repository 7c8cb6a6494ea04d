"""Moving up and back: `termsync db copy` SQLite -> MongoDB-wire server -> SQLite, timed, with
every checksum compared (the copy's own report, and HEAD and each version read back at the end).

The source is a SQLite database with --items OCL lines imported (half concepts, half mappings:
bench/import.py's file) and two released versions (v1 after the first import, v2 after the
same file again with every tenth concept renamed). The target is a FerretDB started for the run
(tests/ferretdb, on its SQLite backend; --postgresql URL for its PostgreSQL backend) or
--mongodb-uri. In the same run, as baselines: the same copy SQLite -> SQLite, and a floor that is
FerretDB's cost alone, pymongo inserting the same number of documents of the same size in
batches of 1,000 (what `db copy` sends), with nothing of termsync's in between.

    .venv/bin/python bench/db_copy.py --items 200000
    .venv/bin/python bench/db_copy.py --items 20000 --postgresql postgres://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ADMIN_TOKEN = "bench-db-copy-admin-token-0123456789abcdef"
HEADERS = {"Authorization": f"Token {ADMIN_TOKEN}"}
SOURCE = "/orgs/Bench/sources/Synthetic/"


def build_source(path: Path, items: int, workdir: Path) -> dict[str, Any]:
    """A SQLite database with `items` lines imported twice (a tenth changed) and two releases."""
    import logging

    logging.disable(logging.WARNING)
    from app import create_app

    lines = importlib.import_module("import")  # bench/import.py: its synthetic file
    data = workdir / "synthetic.jsonl"
    lines.write_file(data, items, "mixed")
    changed = workdir / "changed.jsonl"
    with open(data, encoding="utf-8") as original, open(changed, "w", encoding="utf-8") as out:
        for number, line in enumerate(original):
            document = json.loads(line)
            if document["type"] == "Concept" and number % 10 == 0:
                document["names"][0]["name"] += " (revised)"
            out.write(json.dumps(document) + "\n")
    app = create_app({"DATABASE_URI": f"sqlite:///{path}", "ADMIN_TOKEN": ADMIN_TOKEN,
                      "TESTING": True, "LOG_LEVEL": "ERROR", "EXPORT_ON_RELEASE": False,
                      "IMPORT_DIR": str(workdir / "uploads"), "IMPORT_MAX_LINES": items * 2})
    client = app.test_client()
    assert client.post("/orgs/", json={"id": "Bench"}, headers=HEADERS).status_code == 201
    assert client.post("/orgs/Bench/sources/", json={"id": "Synthetic"},
                       headers=HEADERS).status_code == 201
    workers = app.extensions["termsync.jobs"]
    started = time.perf_counter()
    for version, file in (("v1", data), ("v2", changed)):
        with open(file, "rb") as handle:
            answer = client.post("/importers/bulk-import/?update_if_exists=true",
                                 input_stream=handle, content_type="application/x-ndjson",
                                 headers=HEADERS)
        assert answer.status_code == 202, answer.get_json()
        workers.run_until_idle()
        assert client.post(f"{SOURCE}versions/", json={"id": version, "released": True},
                           headers=HEADERS).status_code == 201
    source = client.get(SOURCE, headers=HEADERS).get_json()
    app.extensions["termsync.store"].close()
    return {"built_s": round(time.perf_counter() - started, 1),
            "checksum": source["checksums"]["content"]}


def termsync_copy(source: str, target: str, **names: str) -> dict[str, Any]:
    """`termsync db copy` as an operator runs it; its wall time and report."""
    options = [f"--{name.replace('_', '-')}={value}" for name, value in names.items()]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app.cli", "db", "copy", source, target,
                           *options], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"db copy {source} -> {target} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    documents = sum(report["copied"].values())
    return {"wall_s": round(wall, 1), "documents": documents,
            "documents_per_s": round(documents / wall), "checksums": report["checksums"]}


def checksums(uri: str, mongo_db: str = "termsync") -> dict[str, str]:
    """HEAD's and every version's checksums.content, read from a store."""
    from app.store import open_store

    store = open_store(uri, mongo_db=mongo_db)
    try:
        found = {"HEAD": store.items.head_checksum(SOURCE)}
        for version in store.versions.list(SOURCE, None, 0, 0)[0]:
            found[version.id] = store.items.scan_checksum(SOURCE, version.seq)
        return found
    finally:
        store.close()


def pymongo_floor(uri: str, documents: int, size: int) -> dict[str, Any]:
    """FerretDB's own cost: `documents` documents of about `size` bytes, 1,000 a batch."""
    import pymongo

    client: Any = pymongo.MongoClient(uri)
    database = client[f"floor_{uuid.uuid4().hex[:8]}"]
    padding = "x" * max(0, size - 120)
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for number in range(documents):
        batch.append({"_id": f"/orgs/Bench/sources/Synthetic/concepts/{number}/1/",
                      "source": SOURCE, "type": "Concept", "id": str(number), "seq": number,
                      "data": {"padding": padding}})
        if len(batch) == 1000:
            database.items.insert_many(batch, ordered=False)
            batch = []
    if batch:
        database.items.insert_many(batch, ordered=False)
    wall = time.perf_counter() - started
    client.drop_database(database.name)
    client.close()
    return {"wall_s": round(wall, 1), "documents_per_s": round(documents / wall)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200000, help="OCL lines in the source")
    parser.add_argument("--mongodb-uri", help="copy through this server instead of a FerretDB")
    parser.add_argument("--postgresql", help="FerretDB on PostgreSQL at this URL (else SQLite)")
    args = parser.parse_args()

    from tests import ferretdb

    workdir = Path(tempfile.mkdtemp(prefix="termsync-bench-copy-"))
    server = None
    if args.mongodb_uri:
        uri, backend = args.mongodb_uri, "mongodb-uri"
    elif args.postgresql:
        server = ferretdb.FerretDB(postgresql=args.postgresql)
        uri, backend = server.uri, "ferretdb-postgresql"
    else:
        server = ferretdb.FerretDB(sqlite=str(workdir / "ferretdb"))
        uri, backend = server.uri, "ferretdb-sqlite"
    try:
        original = workdir / "original.db"
        built = build_source(original, args.items, workdir)
        source = f"sqlite:///{original}"
        mongo_db = f"copy_{uuid.uuid4().hex[:8]}"
        figures: dict[str, Any] = {"items": args.items, "server": backend, "source": built}
        figures["sqlite_to_sqlite"] = termsync_copy(source, f"sqlite:///{workdir / 'baseline.db'}")
        figures["sqlite_to_server"] = termsync_copy(source, uri, target_db=mongo_db)
        figures["server_to_sqlite"] = termsync_copy(uri, f"sqlite:///{workdir / 'back.db'}",
                                                    source_db=mongo_db)
        before = checksums(source)
        figures["checksums_equal"] = (before == checksums(uri, mongo_db)
                                      == checksums(f"sqlite:///{workdir / 'back.db'}"))
        figures["versions_compared"] = sorted(before)
        average = os.path.getsize(original) // max(1, figures["sqlite_to_server"]["documents"])
        figures["pymongo_floor"] = pymongo_floor(uri, figures["sqlite_to_server"]["documents"],
                                                 min(average, 2000))
        for leg in ("sqlite_to_server", "server_to_sqlite"):
            figures[leg]["ratio_to_sqlite_to_sqlite"] = round(
                figures[leg]["wall_s"] / figures["sqlite_to_sqlite"]["wall_s"], 1)
        figures["sqlite_to_server"]["ratio_to_pymongo_floor"] = round(
            figures["sqlite_to_server"]["wall_s"] / figures["pymongo_floor"]["wall_s"], 1)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    return 0 if figures["checksums_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
