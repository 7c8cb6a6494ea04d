"""Benchmark: build exports of synthetic sources; items/s, peak RSS and where the time goes.

    .venv/bin/python bench/export_build.py                       # 10k, 100k and 300k items
    .venv/bin/python bench/export_build.py --sizes 10000,30000 --database mongomock://

Each size runs in its own subprocess so that peak RSS is per size. A source of N items holds N/3
concepts (3 names and a description each) and 2 mappings per concept, written as item versions
straight through the store's bulk load (as `termsync db copy` writes), on a new SQLite file by
default. The export is built by the same `build_export` the job runs, reading the version's
content a batch at a time.

Reported per size: items/s of the build; peak RSS of the process and the build's own peak (VmHWM
during the build minus RSS before it, peak counter reset through /proc/self/clear_refs); time
split between reading the database, rendering OCL shapes, and encoding+compressing; and
encode+compress against plain zlib.compress of the same JSON bytes at the same level (the
physical limit for a deflate zip), as a ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from app.domain import Domain, ocl
from app.domain.accounts import ORG, Caller, Owner
from app.exports.builder import build_export, export_header
from app.model import CONCEPT, LIVE, MAPPING, Source, Version, version_url
from app.store import Store, open_store
from app.timeutil import now_iso

CALLER = Caller(username="bench", is_admin=True)
BATCH = 5000


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _item(source: Source, kind: str, item_id: str, seq: int, now: str,
          data: dict[str, Any]) -> dict[str, Any]:
    url = ocl.item_url(source.url, kind, item_id)
    return {"_id": version_url(url, seq), "source": source.url, "type": kind, "id": item_id,
            "url": url, "deleted": False, "retired": False, "updated_on": now, "created_on": now,
            "created_by": "bench", "updated_by": "bench", "data": data, "seq": seq, "sup": LIVE}


def load(store: Store, domain: Domain, items: int, now: str | None = None,
         ) -> tuple[dict[str, Any], Version, int]:
    """A source with items // 3 concepts and 2 mappings each, all stamped `now` (default: the
    present), and a version v1 of it."""
    content = domain.content
    source = content.create_source(CALLER, Owner(ORG, "Bench"),
                                   {"id": "Synthetic", "default_locale": "en"})
    concepts = items // 3
    seq = 0
    batch: list[dict[str, Any]] = []
    now = now or now_iso()
    for number in range(concepts):
        code = f"C{number:07d}"
        seq += 1
        batch.append(_item(source, CONCEPT, code, seq, now, {
            "concept_class": "Diagnosis", "datatype": "N/A", "external_id": None, "extras": {},
            "names": [{"name": f"Synthetic concept {number} {kind}", "locale": locale,
                       "locale_preferred": kind == "FULLY_SPECIFIED", "name_type": kind,
                       "external_id": None}
                      for kind, locale in (("FULLY_SPECIFIED", "en"), ("SHORT", "en"),
                                           ("FULLY_SPECIFIED", "fr"))],
            "descriptions": [{"description": f"A synthetic concept number {number} used to "
                                             "measure how fast exports are built.",
                              "locale": "en", "locale_preferred": True,
                              "description_type": "Definition", "external_id": None}]}))
        for offset, map_type in ((1, "SAME-AS"), (2, "NARROWER-THAN")):
            seq += 1
            target = f"C{(number + offset) % concepts:07d}"
            batch.append(_item(source, MAPPING, f"{number * 2 + offset}", seq, now, {
                "map_type": map_type,
                "from_concept_url": ocl.item_url(source.url, CONCEPT, code),
                "to_concept_url": ocl.item_url(source.url, CONCEPT, target),
                "external_id": None, "extras": {}}))
        if len(batch) >= BATCH:
            store.items.load(batch)
            batch = []
    store.items.load(batch)
    store.sources.update(source.url, seq=seq, last_updated=now)
    store.items.recompute_checksums()
    source = domain.content.find_repo(source.url) or source
    version = content.create_version(CALLER, source, {"id": "v1", "released": False})
    return source, version, seq


def synthetic_items(source: Source, items: int, kind: str) -> Any:
    """The same item documents `load` inserts, generated on the fly in id order (no database)."""
    concepts = items // 3
    now = now_iso()
    if kind == CONCEPT:
        for number in range(concepts):
            yield _item(source, CONCEPT, f"C{number:07d}", number + 1, now, {
                "concept_class": "Diagnosis", "datatype": "N/A", "external_id": None,
                "extras": {},
                "names": [{"name": f"Synthetic concept {number} {name_type}", "locale": locale,
                           "locale_preferred": name_type == "FULLY_SPECIFIED",
                           "name_type": name_type, "external_id": None}
                          for name_type, locale in (("FULLY_SPECIFIED", "en"), ("SHORT", "en"),
                                                    ("FULLY_SPECIFIED", "fr"))],
                "descriptions": [{"description": f"A synthetic concept number {number} used "
                                                 "to measure how fast exports are built.",
                                  "locale": "en", "locale_preferred": True,
                                  "description_type": "Definition", "external_id": None}]})
        return
    for number in range(1, 2 * concepts + 1):  # order is the database's business
        concept_number = (number - 1) // 2
        yield _item(source, MAPPING, str(number), concepts + number, now, {
            "map_type": "SAME-AS" if number % 2 else "NARROWER-THAN",
            "from_concept_url": ocl.item_url(source.url, CONCEPT, f"C{concept_number:07d}"),
            "to_concept_url": ocl.item_url(source.url, CONCEPT,
                                           f"C{(concept_number + 1) % concepts:07d}"),
            "external_id": None, "extras": {}})


def run_builder_only(items: int) -> dict[str, Any]:
    """Build from generated documents: the builder's own memory and speed, no database."""
    now = now_iso()
    source = Source(url="/orgs/Bench/sources/Synthetic/", id="Synthetic", repo_type="Source",
                    owner="Bench", owner_type=ORG, owner_url="/orgs/Bench/",
                    public_access="View", created_on=now, updated_on=now, default_locale="en")
    header = export_header({"type": "Source Version", "id": "v1"}, now_iso(), now_iso())
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "export.zip")
        stats = build_export(path, header, source,
                             [("concepts", synthetic_items(source, items, CONCEPT)),
                              ("mappings", synthetic_items(source, items, MAPPING))])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before reading it back
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("export.json")
        started = time.perf_counter()
        zlib.compress(raw, 6)
        zlib_seconds = time.perf_counter() - started
    return {"items": stats.items, "build_seconds": round(stats.seconds_total, 2),
            "items_per_second": round(stats.items / stats.seconds_total),
            "generate_seconds": round(stats.seconds_read, 2),
            "render_seconds": round(stats.seconds_render, 2),
            "encode_compress_seconds": round(stats.seconds_encode_compress, 2),
            "zlib_seconds": round(zlib_seconds, 2),
            "encode_compress_vs_zlib": round(stats.seconds_encode_compress / zlib_seconds, 2),
            "peak_rss_process_mb": round(peak / 1024, 1)}


def run_one(items: int, database: str) -> dict[str, Any]:
    """Load and build one size in this process; return the figures."""
    work = tempfile.mkdtemp(prefix="termsync-bench-export-")
    store = open_store(f"sqlite:///{work}/bench.db" if database == "sqlite" else database,
                       mongo_db=f"bench_exports_{os.getpid()}")
    store.ensure_schema()
    store.orgs.insert({"_id": "Bench", "id": "Bench", "public_access": "View", "members": []})
    domain = Domain(store)
    started = time.perf_counter()
    source, version, count = load(store, domain, items)
    load_seconds = time.perf_counter() - started
    header = export_header(ocl.render_version(version, source), version.last_updated,
                           now_iso())
    gc.collect()
    gc.freeze()  # mongomock keeps its database in this process: keep it out of GC passes
    rss_before = _status_kb("VmRSS")
    peak_reset = _reset_peak()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "export.zip")
        stats = build_export(path, header, source,
                             [("concepts", domain.content.iter_content(source, version, CONCEPT)),
                              ("mappings", domain.content.iter_content(source, version, MAPPING))])
        build_peak = _status_kb("VmHWM")
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("export.json")
        started = time.perf_counter()
        compressed = zlib.compress(raw, 6)
        zlib_seconds = time.perf_counter() - started
    assert stats.items == count, (stats.items, count)
    store.drop()
    encode = stats.seconds_encode_compress
    return {
        "database": database.split(":")[0],
        "items": stats.items, "concepts": stats.concepts, "mappings": stats.mappings,
        "load_seconds": round(load_seconds, 2),
        "build_seconds": round(stats.seconds_total, 2),
        "items_per_second": round(stats.items / stats.seconds_total),
        "json_mb": round(stats.json_bytes / 1e6, 1), "zip_mb": round(stats.size / 1e6, 1),
        "zlib_mb": round(len(compressed) / 1e6, 1),
        "read_seconds": round(stats.seconds_read, 2),
        "render_seconds": round(stats.seconds_render, 2),
        "encode_compress_seconds": round(encode, 2),
        "zlib_seconds": round(zlib_seconds, 2),
        "encode_compress_vs_zlib": round(encode / zlib_seconds, 2),
        "render_encode_compress_vs_zlib": round((encode + stats.seconds_render) / zlib_seconds, 2),
        "rss_before_build_mb": round(rss_before / 1024, 1),
        "peak_rss_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_during_build_mb": round(build_peak / 1024, 1) if peak_reset else None,
        "build_rss_growth_mb": round((build_peak - rss_before) / 1024, 1) if peak_reset else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000",
                        help="comma-separated item counts (default 10000,100000,300000)")
    parser.add_argument("--modes", default="database,builder",
                        help="database (load + build from the embedded database), builder "
                             "(build from generated documents: the builder alone)")
    parser.add_argument("--database", default="sqlite",
                        help="'sqlite' (a new file, the default), mongomock://, mongodb://... or "
                             "'ferretdb' (one started for the run)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--builder-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_builder_only(args.one) if args.builder_only
                         else run_one(args.one, args.database)))
        return 0
    from tests.ferretdb import resolve

    args.database = resolve(args.database)  # `ferretdb`: one started for the run, shared
    sizes = [int(text) for text in args.sizes.split(",")]
    modes = args.modes.split(",")
    results = []
    for size in sizes if "database" in modes else []:
        answer = subprocess.run([sys.executable, __file__, "--one", str(size), "--database",
                                 args.database], check=True, capture_output=True, text=True)
        result = json.loads(answer.stdout.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result), flush=True)
    builder = []
    for size in sizes if "builder" in modes else []:
        answer = subprocess.run([sys.executable, __file__, "--one", str(size), "--builder-only"],
                                check=True, capture_output=True, text=True)
        builder.append(json.loads(answer.stdout.strip().splitlines()[-1]))
        print(json.dumps(dict(builder[-1], mode="builder-only")), flush=True)
    if len(builder) > 1:
        print(json.dumps({"builder_only_peak_rss_ratio": round(
            builder[-1]["peak_rss_process_mb"] / builder[0]["peak_rss_process_mb"], 2)}))
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(json.dumps({
            "sizes": [result["items"] for result in results],
            "process_peak_rss_ratio": round(last["peak_rss_process_mb"]
                                            / first["peak_rss_process_mb"], 2),
            "peak_rss_during_build_ratio": round(last["peak_rss_during_build_mb"]
                                                 / first["peak_rss_during_build_mb"], 2)
            if first["peak_rss_during_build_mb"] else None,
            "build_rss_growth_mb": [result["build_rss_growth_mb"] for result in results],
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
