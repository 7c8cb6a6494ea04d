"""Benchmark: a synthetic source of N items, its diff paged through HTTP, GETs with
checksums.content, and version cuts at 1k items and at N.

    .venv/bin/python bench/diffs.py                                   # 200k items on SQLite
    .venv/bin/python bench/diffs.py --items 10000 --database mongomock://   # contrast
    .venv/bin/python bench/diffs.py --shape icd10cm --serve           # ICD-10-CM-shaped, served

Loads half concepts, half mappings through the domain (every write is a real item version,
committed a thousand to a transaction as a bulk import does), then, in process through the Flask
test client: pages the whole diff of the released version 500 items at a time following `next`
(first, median and last page: keyset paging keeps last/first near 1), GETs the source (HEAD, whose
checksum every write keeps current) and the version, and cuts versions at 1k and at N items
(constant time: a cut records a seq and copies the checksum). Ratios compare figures of one run.

`--shape icd10cm` loads instead a source shaped as OCL's ICD-10-CM (bench/import.py's: a tree of
codes, each below a root mapped to its parent, with names, a description and extras holding
lists) through a bulk import. `--serve` then pages the same diff in turns in process, through
gunicorn alone and through the deployed stack (tests/stack.py: nginx with
deploy/nginx/termsync.conf in front of gunicorn with gunicorn.conf.py, 2 processes), each on a
copy of the database, over keep-alive HTTP on loopback, each page read to its last byte;
`--rounds` passes each after a warm-up, and in process is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import requests

from app import create_app
from app.domain.accounts import Caller

ADMIN = {"Authorization": "Token bench-admin-token-0123456789abcdef"}
CALLER = Caller(username="admin", is_admin=True)
SOURCE = "/orgs/Bench/sources/Big/"
ICD_SOURCE = "/orgs/Bench/sources/Synthetic/"  # bench/import.py's ICD-10-CM-shaped lines name it


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


def load_icd10cm(app: Any, client: Any, items: int, work: str) -> float:
    """bench/import.py's ICD-10-CM-shaped lines (about `items`), bulk imported; seconds taken."""
    shapes = importlib.import_module("bench.import")
    path = Path(work) / "icd10cm.jsonl"
    shapes.write_icd10cm_file(path, items)
    client.post("/orgs/Bench/sources/", json={"id": "Synthetic"}, headers=ADMIN)
    start = time.perf_counter()
    answer = client.post("/importers/bulk-import/", data=path.read_bytes(),
                         headers={**ADMIN, "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 202, answer.get_json()
    app.extensions["termsync.jobs"].run_until_idle()
    seconds = time.perf_counter() - start
    job = client.get(answer.headers["Location"], headers=ADMIN).get_json()
    assert job["state"] == "FINISHED" and not job["summary"]["failed"], job["summary"]
    return seconds


def page_through(get: Callable[[str], tuple[int, bytes, dict[str, str]]],
                 source: str) -> tuple[list[float], int, int]:
    """Every page of 500 of the released version's diff, following `next`: each page's time to
    its last byte (ms), the first page's item count and the items in all."""
    pages: list[float] = []
    path: str | None = f"{source}full/?includeConcepts=true&includeMappings=true&limit=500"
    seen = first_page = 0
    while path:
        begin = time.perf_counter()
        status, data, headers = get(path)  # the body is streamed: the page is served once read
        pages.append((time.perf_counter() - begin) * 1000)
        assert status == 200, data[:300]
        body = json.loads(data)
        seen += len(body["concepts"]) + len(body["mappings"])
        first_page = first_page or seen
        path = headers.get("next")
        if path:
            path = "/" + path.split("://", 1)[1].split("/", 1)[1]
    return pages, first_page, seen


def describe(pages: list[float]) -> str:
    """First, median and last page."""
    middle = statistics.median(pages[1:-1] or pages)
    return (f"first {pages[0]:.1f} ms, median {middle:.1f} ms, last {pages[-1]:.1f} ms; "
            f"last/first = {pages[-1] / pages[0]:.2f}")


def served(work: str, uri: str, source: str, items: int, rounds: int) -> None:
    """The same diff paged in process, through gunicorn alone and through nginx → gunicorn,
    in turns (`rounds` times each, after a warm-up pass), each deployment on a copy of the
    database; each pass's median page, and the median of those against in process."""
    from tests.stack import Stack

    app = create_app({"DATABASE_URI": uri, "TESTING": True, "LOG_LEVEL": "WARNING",
                      "EXPORT_ON_RELEASE": False})
    client = app.test_client()

    def in_process(path: str) -> tuple[int, bytes, dict[str, str]]:
        answer = client.get(path)
        return answer.status_code, answer.get_data(), dict(answer.headers)

    deployments: list[tuple[str, Callable[[str], tuple[int, bytes, dict[str, str]]]]] = [
        ("in process", in_process)]
    with ExitStack() as running:
        for proxy, name in ((False, "gunicorn alone"), (True, "nginx → gunicorn")):
            root = Path(work) / ("stack" if proxy else "bare")
            root.mkdir()
            shutil.copyfile(Path(work) / "bench.db", root / "termsync.db")
            stack = running.enter_context(Stack(root, proxy=proxy, worker=False, settings={
                "TERMSYNC_ADMIN_TOKEN": ADMIN["Authorization"].split()[1],
                "TERMSYNC_LOG_LEVEL": "ERROR"}))
            http = running.enter_context(requests.Session())
            http.trust_env = False

            def over_http(path: str, http: requests.Session = http,
                          url: str = stack.url) -> tuple[int, bytes, dict[str, str]]:
                answer = http.get(url + path, timeout=120)
                return answer.status_code, answer.content, dict(answer.headers)

            deployments.append((name, over_http))
        for _, get in deployments:
            page_through(get, source)  # warm-up: every process, its caches
        medians: dict[str, list[float]] = {name: [] for name, _ in deployments}
        for turn in range(rounds):
            for name, get in deployments:
                pages, _, seen = page_through(get, source)
                assert seen == items, (seen, items)
                medians[name].append(statistics.median(pages[1:-1] or pages))
                print(f"turn {turn + 1}, {name:17} {len(pages):>6} pages  {describe(pages)}",
                      flush=True)
    baseline = statistics.median(medians["in process"])
    for name, values in medians.items():
        middle = statistics.median(values)
        print(f"median page, {name:17} {middle:7.1f} ms (turns: "
              f"{', '.join(f'{value:.1f}' for value in values)}); "
              f"/ in process = {middle / baseline:.2f}", flush=True)
    app.extensions["termsync.store"].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--database", default="sqlite",
                        help="'sqlite' (a new file), mongomock://, mongodb://... or 'ferretdb' "
                             "(one started for the run)")
    parser.add_argument("--shape", choices=("mixed", "icd10cm"), default="mixed",
                        help="synthetic halves (through the domain), or ICD-10-CM-shaped lines "
                             "(a bulk import)")
    parser.add_argument("--serve", action="store_true",
                        help="also page the diff through nginx → gunicorn and gunicorn alone")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --serve: passes of each deployment, in turns")
    args = parser.parse_args()
    if args.serve and args.database != "sqlite":
        parser.error("--serve runs on the embedded database (sqlite)")
    work = tempfile.mkdtemp(prefix="termsync-bench-diffs-")
    from tests.ferretdb import resolve

    uri = f"sqlite:///{work}/bench.db" if args.database == "sqlite" else resolve(args.database)
    app = create_app({"DATABASE_URI": uri, "MONGO_DB": f"bench_diffs_{os.getpid()}",
                      "ADMIN_TOKEN": ADMIN["Authorization"].split()[1], "TESTING": True,
                      "LOG_LEVEL": "WARNING", "EXPORT_ON_RELEASE": False})
    domain = app.extensions["termsync"]
    store = app.extensions["termsync.store"]
    client = app.test_client()
    client.post("/orgs/", json={"id": "Bench"}, headers=ADMIN)
    content = domain.content

    def cut(source: dict[str, Any], prefix: str) -> float:
        numbers = iter(range(1000))
        return median_ms(lambda: content.create_version(
            CALLER, source, {"id": f"{prefix}-{next(numbers)}"}), 5)

    cuts: dict[str, float] = {}
    if args.shape == "icd10cm":
        load_seconds = load_icd10cm(app, client, args.items, work)
        path = ICD_SOURCE
        source = store.sources.get(path)
        items = sum(source_counts(client, path))
        how = "a bulk import"
    else:
        path, items, how = SOURCE, args.items, "through the domain"
        client.post("/orgs/Bench/sources/", json={"id": "Big"}, headers=ADMIN)
        source = store.sources.get(path)
        concepts = items // 2
        start = time.perf_counter()
        for first in range(0, items, 1000):
            with store.transaction():
                for number in range(first, min(first + 1000, items)):
                    if number < concepts:
                        content.save_concept(CALLER, source, concept(number), expect="new")
                    else:
                        content.save_mapping(CALLER, source, mapping(number - concepts, concepts),
                                             expect="new")
            if first + 1000 == 1000:
                cuts["1k"] = cut(source, "at-1k")
        load_seconds = time.perf_counter() - start
    cuts["full"] = cut(source, "at-full")
    content.create_version(CALLER, source, {"id": "full", "released": True})

    def get(url: str) -> tuple[int, bytes, dict[str, str]]:
        answer = client.get(url)
        return answer.status_code, answer.get_data(), dict(answer.headers)

    pages, first_page, seen = page_through(get, path)
    assert seen == items, (seen, items)
    head_ms = median_ms(lambda: client.get(path), 50)
    version_ms = median_ms(lambda: client.get(f"{path}full/"), 50)
    print(f"database                {args.database}, shape {args.shape}")
    print(f"items loaded            {items:>10,}  in {load_seconds:8.2f} s  "
          f"= {items / load_seconds:,.0f} items/s ({how})")
    print(f"diff pages, in process  {len(pages):>6}  {describe(pages)} "
          f"(the first holds {first_page}: a first page ends between two seconds)", flush=True)
    print(f"GET source (HEAD)       {head_ms:10.2f} ms   with checksums.content")
    print(f"GET version             {version_ms:10.2f} ms   with checksums.content")
    if "1k" in cuts:
        print(f"cut version at 1k       {cuts['1k']:10.2f} ms")
    print(f"cut version at {items // 1000}k     {cuts['full']:10.2f} ms", flush=True)
    if args.serve:
        store.close()  # its last connection: the WAL goes into the file the stacks copy
        served(work, uri, path, items, args.rounds)
    else:
        store.drop()


def source_counts(client: Any, path: str) -> tuple[int, int]:
    """The source's live concepts and mappings."""
    summary = client.get(f"{path}?includeSummary=true", headers=ADMIN).get_json()["summary"]
    return int(summary["active_concepts"]), int(summary["active_mappings"])


if __name__ == "__main__":
    main()
