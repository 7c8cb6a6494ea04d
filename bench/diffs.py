"""Benchmark: a synthetic source of N items, its diff paged through HTTP, GETs with
checksums.content, and version cuts at 1k items and at N.

    .venv/bin/python bench/diffs.py                                   # 200k items on SQLite
    .venv/bin/python bench/diffs.py --items 10000 --database mongomock://   # contrast

Loads half concepts, half mappings through the domain (every write is a real item version,
committed a thousand to a transaction as a bulk import does), then, in process through the Flask
test client: pages the whole diff of the released version 500 items at a time following `next`
(first, median and last page: keyset paging keeps last/first near 1), GETs the source (HEAD, whose
checksum every write keeps current) and the version, and cuts versions at 1k and at N items
(constant time: a cut records a seq and copies the checksum). Ratios compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from app import create_app
from app.domain.accounts import Caller

ADMIN = {"Authorization": "Token bench-admin-token-0123456789abcdef"}
CALLER = Caller(username="admin", is_admin=True)
SOURCE = "/orgs/Bench/sources/Big/"


def concept(number: int) -> dict[str, Any]:
    return {"id": str(number), "concept_class": "Diagnosis", "datatype": "N/A", "retired": False,
            "names": [{"name": f"Concept {number}", "locale": "en", "locale_preferred": True,
                       "name_type": "FULLY_SPECIFIED", "external_id": None}],
            "descriptions": [], "external_id": None, "extras": {}, "parent_concept_urls": [],
            "update_comment": None}


def mapping(number: int, concepts: int) -> dict[str, Any]:
    return {"id": str(number), "map_type": "SAME-AS", "retired": False,
            "from_concept_url": f"{SOURCE}concepts/{number % concepts}/",
            "to_concept_url": None, "to_source_url": "/orgs/WHO/sources/ICD-10/",
            "to_concept_code": f"X{number}", "to_concept_name": None, "external_id": None,
            "extras": {}, "sort_weight": None, "update_comment": None}


def median_ms(function: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--database", default="sqlite",
                        help="'sqlite' (a new file), mongomock:// or mongodb://...")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="termsync-bench-diffs-")
    uri = f"sqlite:///{work}/bench.db" if args.database == "sqlite" else args.database
    app = create_app({"DATABASE_URI": uri, "MONGO_DB": f"bench_diffs_{os.getpid()}",
                      "ADMIN_TOKEN": ADMIN["Authorization"].split()[1], "TESTING": True,
                      "LOG_LEVEL": "WARNING", "EXPORT_ON_RELEASE": False})
    domain = app.extensions["termsync"]
    store = app.extensions["termsync.store"]
    client = app.test_client()
    client.post("/orgs/", json={"id": "Bench"}, headers=ADMIN)
    client.post("/orgs/Bench/sources/", json={"id": "Big"}, headers=ADMIN)
    source = store.sources.get(SOURCE)
    content = domain.content
    concepts = args.items // 2
    args.items - concepts

    def cut(prefix: str) -> float:
        numbers = iter(range(1000))
        return median_ms(lambda: content.create_version(
            CALLER, source, {"id": f"{prefix}-{next(numbers)}"}), 5)

    cuts: dict[str, float] = {}
    start = time.perf_counter()
    for first in range(0, args.items, 1000):
        with store.transaction():
            for number in range(first, min(first + 1000, args.items)):
                if number < concepts:
                    content.save_concept(CALLER, source, concept(number), expect="new")
                else:
                    content.save_mapping(CALLER, source, mapping(number - concepts, concepts),
                                         expect="new")
        if first + 1000 == 1000:
            cuts["1k"] = cut("at-1k")
    load_seconds = time.perf_counter() - start
    cuts["full"] = cut("at-full")
    content.create_version(CALLER, source, {"id": "full", "released": True})

    pages: list[float] = []
    url: str | None = f"{SOURCE}full/?includeConcepts=true&includeMappings=true&limit=500"
    seen = 0
    while url:
        begin = time.perf_counter()
        answer = client.get(url)
        data = answer.get_data()  # the body is streamed: the page is served once it is read
        pages.append((time.perf_counter() - begin) * 1000)
        assert answer.status_code == 200, data[:300]
        body = json.loads(data)
        seen += len(body["concepts"]) + len(body["mappings"])
        url = answer.headers.get("next")
        if url:
            url = url.split("://", 1)[1].split("/", 1)[1]
            url = "/" + url
    assert seen == args.items, (seen, args.items)

    head_ms = median_ms(lambda: client.get(SOURCE), 50)
    version_ms = median_ms(lambda: client.get(f"{SOURCE}full/"), 50)
    middle = statistics.median(pages[1:-1] or pages)
    print(f"database                {args.database}")
    print(f"items loaded            {args.items:>10,}  in {load_seconds:8.2f} s  "
          f"= {args.items / load_seconds:,.0f} items/s (through the domain)")
    print(f"diff pages of 500       {len(pages):>10}  first {pages[0]:.1f} ms, median "
          f"{middle:.1f} ms, last {pages[-1]:.1f} ms; last/first = {pages[-1] / pages[0]:.2f}")
    print(f"GET source (HEAD)       {head_ms:10.2f} ms   with checksums.content")
    print(f"GET version             {version_ms:10.2f} ms   with checksums.content")
    print(f"cut version at 1k       {cuts['1k']:10.2f} ms")
    print(f"cut version at {args.items // 1000}k     {cuts['full']:10.2f} ms   "
          f"ratio = {cuts['full'] / cuts['1k']:.2f}")
    store.drop()


if __name__ == "__main__":
    main()
