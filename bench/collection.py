"""Benchmark: a collection of 50,000 references into a 200,000-item source.

    .venv/bin/python bench/collection.py                          # 200,000 items, 50,000 refs
    .venv/bin/python bench/collection.py --items 30000 --references 5000 --database mongomock://

The source is loaded as bench/export_build.py loads it (N/3 concepts with 2 mappings each,
straight through the store's bulk load), on a new SQLite file by default. Then, through HTTP
(the Flask test client of the real app, no network):

- one `PUT .../references/` of all the references' expressions (concepts, then mappings), timed,
  and the collection's HEAD checksum compared with a scan of its entries;
- a version cut of that collection, and of a second collection of 1,000 references: both record
  a seq, so they cost the same (the median of `--cuts` cuts each);
- searches of the collection's concepts (text in the id or names; a datatype), against the same
  searches of the source as the baseline, the median of 5 each;
- the released version's export built by the real job (concepts, mappings, references), timed,
  and its size;
- one edit of a referenced concept (the item write plus its follower's entry), against an edit
  of a concept no collection holds; then a diff of the collection's HEAD since the cut.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_build import load  # noqa: E402

from app import create_app  # noqa: E402
from app.model import HEAD_SEQ  # noqa: E402

TOKEN = "bench-collections-token-0123456789abcdef"
ADMIN = {"Authorization": f"Token {TOKEN}"}
SOURCE = "/orgs/Bench/sources/Synthetic/"


def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def call(client: Any, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    answer = client.open(path, method=method, headers=ADMIN, **kwargs)
    assert answer.status_code == expect, (method, path, answer.status_code, answer.get_data()[:500])
    return answer.get_json(silent=True)


def median_seconds(action: Any, repeat: int = 5) -> float:
    return statistics.median(timed(action)[0] for _ in range(repeat))


def expressions(items: int, count: int, start: int = 0) -> list[str]:
    """`count` expressions of the synthetic source: its concepts first, then its mappings."""
    concepts = items // 3
    found = [f"{SOURCE}concepts/C{number:07d}/" for number in range(start, min(concepts, count))]
    found += [f"{SOURCE}mappings/{number}/" for number in range(1, count - len(found) + 1)]
    return found[:count]


def run(items: int, references: int, small: int, cuts: int, database: str) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="termsync-bench-collections-")
    uri = f"sqlite:///{work}/bench.db" if database == "sqlite" else database
    app = create_app({"DATABASE_URI": uri, "MONGO_DB": f"bench_collections_{os.getpid()}",
                      "ADMIN_TOKEN": TOKEN, "TESTING": True, "LOAD_DEMO": False,
                      "EXPORT_DIR": f"{work}/exports", "IMPORT_DIR": f"{work}/imports"})
    domain = app.extensions["termsync"]
    store = app.extensions["termsync.store"]
    client = app.test_client()
    call(client, "POST", "/orgs/", 201, json={"id": "Bench"})
    load_seconds, (_, _, count) = timed(lambda: load(app.extensions["termsync.store"], domain, items))
    result: dict[str, Any] = {"database": database.split(":")[0], "source_items": count,
                              "load_seconds": round(load_seconds, 1)}

    big, little = "/orgs/Bench/collections/Big/", "/orgs/Bench/collections/Small/"
    for collection in ("Big", "Small"):
        call(client, "POST", "/orgs/Bench/collections/", 201, json={"id": collection})
    body = {"data": {"expressions": expressions(items, references)}}
    put_seconds, answer = timed(lambda: call(client, "PUT", f"{big}references/", 200, json=body))
    assert sum(1 for r in answer if r["result"] == "added") == references
    result.update(references=references, put_seconds=round(put_seconds, 2),
                  put_references_per_second=round(references / put_seconds))
    call(client, "PUT", f"{little}references/", 200,
         json={"data": {"expressions": expressions(items, small)}})
    entries = store.collection_entries
    assert entries.head_checksum(big) == entries.scan_checksum(big, HEAD_SEQ)

    def cut_times(collection: str) -> list[float]:
        found = []
        for number in range(cuts):
            started = time.perf_counter()
            call(client, "POST", f"{collection}versions/", 201, json={"id": f"c{number}"})
            found.append(time.perf_counter() - started)
        return found

    big_cuts, small_cuts = cut_times(big), cut_times(little)
    result.update(cut_ms_at_references={
        small: round(statistics.median(small_cuts) * 1000, 2),
        references: round(statistics.median(big_cuts) * 1000, 2)})
    result["cut_ratio_large_to_small"] = round(statistics.median(big_cuts)
                                               / statistics.median(small_cuts), 2)

    searches = {"text": "concepts/?q=C00001&limit=50",
                "datatype": "concepts/?datatype=N/A&limit=50"}
    for name, query in searches.items():
        in_collection = median_seconds(lambda url=f"{big}{query}": call(client, "GET", url, 200))
        in_source = median_seconds(lambda url=f"{SOURCE}{query}": call(client, "GET", url, 200))
        result[f"search_{name}_ms"] = {"collection": round(in_collection * 1000, 1),
                                       "source": round(in_source * 1000, 1),
                                       "ratio": round(in_collection / in_source, 2)}

    call(client, "POST", f"{big}versions/", 201, json={"id": "v1", "released": True})
    jobs = app.extensions["termsync.jobs"]
    export_seconds, _ = timed(jobs.run_until_idle)
    export = client.head(f"{big}v1/export/", headers=ADMIN)
    assert export.status_code == 200, export.status_code
    result.update(export_build_seconds=round(export_seconds, 2),
                  export_mb=round(int(export.headers["Content-Length"]) / 1e6, 1),
                  export_items_per_second=round(references / export_seconds))

    since = call(client, "GET", f"{big}v1/", 200)["created_on"]
    followed_seconds, _ = timed(lambda: call(client, "PATCH", f"{SOURCE}concepts/C0000000/", 200,
                                             json={"datatype": "Text"}))
    lone = f"C{items // 3 - 1:07d}"  # past the references when they are fewer than the concepts
    alone_seconds, _ = timed(lambda: call(client, "PATCH", f"{SOURCE}concepts/{lone}/", 200,
                                          json={"datatype": "Text"}))
    diff_seconds, diff = timed(lambda: call(
        client, "GET", f"{big}?includeConcepts=true&includeMappings=true&updatedSince={since}",
        200))
    assert [c["id"] for c in diff["concepts"]] == ["C0000000"]
    result.update(edit_followed_ms=round(followed_seconds * 1000, 2),
                  edit_not_followed_ms=round(alone_seconds * 1000, 2),
                  head_diff_after_edit_ms=round(diff_seconds * 1000, 2))
    store.drop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000, help="source items (default 200000)")
    parser.add_argument("--references", type=int, default=50_000,
                        help="references of the large collection (default 50000)")
    parser.add_argument("--small", type=int, default=1000,
                        help="references of the small collection (default 1000)")
    parser.add_argument("--cuts", type=int, default=9, help="cuts timed per collection")
    parser.add_argument("--database", default="sqlite",
                        help="'sqlite' (a new file, the default), mongomock:// or mongodb://...")
    args = parser.parse_args()
    print(json.dumps(run(args.items, args.references, args.small, args.cuts, args.database)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
