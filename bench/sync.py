"""Subscriber benchmark: first sync of a synthetic export into each local store, then 1,000 changes.

Builds an OCL-shaped export zip (N concepts + 2N mappings) on disk, serves it from a stub server
on loopback (a separate process), and runs each sync in a fresh child process so that its peak
RSS is its own: the real subscriber (download, sha256 check, streaming parse, batched writes,
atomic swap, checksums.content verified against the server's) into SQLite (the default store),
at full size and at 10k items (the RSS ratio shows memory stays flat), and into mongomock (the
in-process MongoDB used for that backend's tests) for contrast, both stores at 10k and 30k items
with the incremental sync (mongomock grows quadratically: iterating a find re-scans its
documents, so its first sync at 300k items had not finished after 16 minutes). A baseline child runs
`json.load` on the same export.json. The incremental sync is a new release with 1,000 changes
(edits, retirements, hard deletes) fetched as diff pages.

    .venv/bin/python bench/sync.py                       # 100k concepts + 200k mappings
    .venv/bin/python bench/sync.py --concepts 10000      # reduced
    .venv/bin/python bench/sync.py --synchronous FULL    # SQLite's power-loss durable setting
    .venv/bin/python bench/sync.py --no-mongomock        # SQLite only
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync.items import content_checksum  # noqa: E402

SOURCE = "/orgs/BENCH/sources/Synthetic/"
TS = "%Y-%m-%dT%H:%M:%S.%fZ"
START = datetime(2025, 1, 1, tzinfo=UTC)


# --- synthetic data ------------------------------------------------------------------------
def stamp(n: int) -> str:
    """The n-th item's updated_on (one millisecond apart)."""
    return (START + timedelta(milliseconds=n)).strftime(TS)


def concept(n: int, version: int = 1, updated: int | None = None, retired: bool = False
            ) -> dict[str, Any]:
    """An OCL-shaped concept."""
    code = f"{n:07d}"
    url = f"{SOURCE}concepts/{code}/"
    return {
        "type": "Concept", "id": code, "external_id": f"{n:032x}", "concept_class": "Diagnosis",
        "datatype": "N/A", "retired": retired, "source": "Synthetic", "owner": "BENCH",
        "owner_type": "Organization", "owner_url": "/orgs/BENCH/", "url": url,
        "version": f"{n}.{version}", "version_url": f"{url}{n}.{version}/",
        "names": [{"type": "ConceptName", "locale": "en", "locale_preferred": True,
                   "name": f"Synthetic concept {n} v{version}", "name_type": "Fully Specified",
                   "external_id": f"{n:032x}"},
                  {"type": "ConceptName", "locale": "fr", "locale_preferred": True,
                   "name": f"Concept synthetique {n}", "name_type": "Fully Specified",
                   "external_id": None}],
        "descriptions": [{"type": "ConceptDescription", "locale": "en",
                          "description": f"Description of concept {n}"}],
        "extras": {"icd10": f"A{n % 100:02d}.{n % 10}"},
        "created_on": stamp(n), "updated_on": stamp(n if updated is None else updated),
        "display_name": f"Synthetic concept {n}", "display_locale": "en",
        "parent_concept_urls": [], "child_concept_urls": [],
    }


def mapping(n: int, concepts: int, version: int = 1, updated: int | None = None,
            retired: bool = False) -> dict[str, Any]:
    """An OCL-shaped mapping between two synthetic concepts."""
    url = f"{SOURCE}mappings/{n}/"
    return {
        "type": "Mapping", "id": str(n), "external_id": None, "retired": retired,
        "map_type": "SAME-AS" if n % 2 else "NARROWER-THAN", "source": "Synthetic",
        "owner": "BENCH", "owner_type": "Organization",
        "from_concept_url": f"{SOURCE}concepts/{n % concepts:07d}/",
        "from_concept_code": f"{n % concepts:07d}",
        "to_source_url": "/orgs/WHO/sources/ICD-10-WHO/", "to_concept_code": f"A{n % 100:02d}",
        "url": url, "version": f"m{n}.{version}", "version_url": f"{url}m{n}.{version}/",
        "extras": None, "created_on": stamp(n), "updated_on": stamp(n if updated is None else updated),
    }


def build_export(path: Path, concepts: int, mappings: int) -> dict[str, Any]:
    """Write the export zip streaming; return its size, sha256, lastUpdated and item count."""
    last = stamp(max(concepts, mappings))
    header = {"type": "Source Version", "id": "v1", "short_code": "Synthetic", "owner": "BENCH",
              "url": SOURCE, "version_url": f"{SOURCE}v1/", "released": True,
              "lastUpdated": last, "export_time": last}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("export.json", "w", force_zip64=True) as out:
            out.write(orjson.dumps(header)[:-1] + b', "concepts": [')
            for n in range(concepts):
                out.write((b"," if n else b"") + orjson.dumps(concept(n)))
            out.write(b'], "mappings": [')
            for n in range(mappings):
                out.write((b"," if n else b"") + orjson.dumps(mapping(n, concepts)))
            out.write(b"]}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest(), "lastUpdated": last,
            "items": concepts + mappings}


def changes(concepts: int, mappings: int, count: int, after: int) -> list[dict[str, Any]]:
    """`count` changes after the export: edits, retirements and hard deletes."""
    result: list[dict[str, Any]] = []
    for k in range(count):
        when = after + 1 + k
        if k % 5 == 4:  # hard delete a concept
            n = (k * 7919) % concepts
            result.append({"type": "Concept", "id": f"{n:07d}", "url": f"{SOURCE}concepts/{n:07d}/",
                           "deleted": True, "updated_on": stamp(when)})
        elif k % 5 == 3:  # retire a mapping
            result.append(mapping((k * 104729) % mappings, concepts, 2, when, retired=True))
        else:  # edit a concept
            result.append(concept((k * 7919) % concepts, 2, when))
    return result


# --- stub server (its own process) ----------------------------------------------------------
def expected_checksums(concepts: int, mappings: int, change_list: list[dict[str, Any]]
                       ) -> tuple[str, str]:
    """checksums.content of v1 (the export) and of v2 (after the changes), as termsync has them."""
    content = {f"{SOURCE}concepts/{n:07d}/": f"{n}.1" for n in range(concepts)}
    content.update({f"{SOURCE}mappings/{n}/": f"m{n}.1" for n in range(mappings)})
    v1 = content_checksum(sorted(content.items()))
    for item in change_list:
        if item.get("deleted"):
            content.pop(item["url"], None)
        else:
            content[item["url"]] = item["version"]
    return v1, content_checksum(sorted(content.items()))


def serve(export: Path, info: dict[str, Any], change_list: list[dict[str, Any]],
          port_queue: Any) -> None:
    """A minimal termsync-like server: versions (with checksums.content), v1 export (ETag,
    Range), v2 diff pages."""
    import logging

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    data = export.read_bytes()
    sha = bytes.fromhex(info["sha256"])
    released = ["v1"]
    by_key = sorted(change_list, key=lambda i: (i["updated_on"], i["type"], i["id"]))
    checksums = dict(zip(("v1", "v2"), expected_checksums(info["concepts"], info["mappings"],
                                                          change_list), strict=True))

    def version(vid: str) -> dict[str, Any]:
        return {"type": "Source Version", "id": vid, "url": f"{SOURCE}{vid}/",
                "version_url": f"{SOURCE}{vid}/", "released": True,
                "created_on": stamp(10**9 if vid == "v2" else 10**8),
                "lastUpdated": by_key[-1]["updated_on"] if vid == "v2" else info["lastUpdated"],
                "checksums": {"content": checksums[vid]}}

    @Request.application
    def app(request: Request) -> Response:
        path = request.path
        if path == "/_bench/release-v2":
            if "v2" not in released:
                released.append("v2")
            return Response("ok")
        if path == "/_bench/reset":
            del released[1:]
            return Response("ok")
        if path == f"{SOURCE}versions/":
            return Response(orjson.dumps([version(v) for v in reversed(released)]),
                            mimetype="application/json")
        if path == f"{SOURCE}v1/export/":
            start = 0
            status = 200
            headers = {"ETag": f'"{info["sha256"]}"', "Accept-Ranges": "bytes",
                       "Repr-Digest": f"sha-256=:{base64.b64encode(sha).decode()}:",
                       "lastUpdated": info["lastUpdated"]}
            if request.headers.get("Range", "").startswith("bytes="):
                start = int(request.headers["Range"][6:].split("-")[0])
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return Response(data[start:], status, headers, mimetype="application/zip")
        if path == f"{SOURCE}v2/":
            limit = int(request.args.get("limit", 500))
            since = request.args.get("updatedSince", "")
            offset = int(request.args.get("offset", 0))
            selected = [i for i in by_key if i["updated_on"] >= since]
            page = selected[offset:offset + limit]
            body = dict(version("v2"), concepts=[i for i in page if i["type"] == "Concept"],
                        mappings=[i for i in page if i["type"] == "Mapping"])
            headers = {"num_found": str(len(selected)), "num_returned": str(len(page))}
            if offset + limit < len(selected):
                args = dict(request.args.items(), offset=str(offset + limit))
                headers["next"] = request.base_url + "?" + "&".join(f"{k}={v}" for k, v in args.items())
            return Response(orjson.dumps(body), headers=headers, mimetype="application/json")
        return Response(json.dumps({"code": 404, "message": path}), 404,
                        mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    port_queue.put(server.server_port)
    server.serve_forever()


# --- the measured child process -------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    """Run a first sync (and optionally an incremental one) into one store; print JSON figures."""
    import requests

    from sync.config import Subscription
    from sync.store import open_store
    from sync.subscriber import build_subscriber

    if args.child == "json-load":
        started = time.perf_counter()
        with zipfile.ZipFile(args.export) as archive, archive.open("export.json") as handle:
            document = json.load(handle)
        items = len(document["concepts"]) + len(document["mappings"])
        print(json.dumps({"seconds": time.perf_counter() - started, "items": items,
                          "maxrss_mb": _maxrss_mb()}))
        return

    store = open_store(args.store)
    sub = Subscription(name="bench", server=args.server, url=SOURCE, mode="release",
                       page_size=500, work_dir=args.work_dir, database_uri=args.store)
    subscriber = build_subscriber(sub, store)
    out: dict[str, Any] = {}
    started = time.perf_counter()
    full = subscriber.sync()
    out["full"] = {"ok": full.ok, "error": full.error, "items": full.applied,
                   "seconds": time.perf_counter() - started, "counts": full.counts,
                   "verified": full.checksum == full.server_checksum,
                   "maxrss_mb": _maxrss_mb()}
    if args.incremental:
        requests.post(f"{args.server}/_bench/release-v2", timeout=10)
        started = time.perf_counter()
        incremental = subscriber.sync()
        out["incremental"] = {"ok": incremental.ok, "error": incremental.error,
                              "items": incremental.applied, "pages": incremental.pages,
                              "seconds": time.perf_counter() - started,
                              "counts": incremental.counts,
                              "verified": incremental.checksum == incremental.server_checksum,
                              "maxrss_mb": _maxrss_mb()}
    store.close()
    print(json.dumps(out))


def _maxrss_mb() -> float:
    """Peak resident set size of this process, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*argv: str) -> dict[str, Any]:
    """Run this script as a measured child; return its JSON."""
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {argv} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def store_uri(store: str, workdir: Path, items: int, synchronous: str) -> str:
    """The database URI of a run: a fresh SQLite file, mongomock's memory, or a new database on
    a MongoDB-wire server."""
    if store == "sqlite":
        return f"sqlite:///{workdir / f'bench-{items}.db'}?synchronous={synchronous}"
    if store.startswith("mongodb"):
        return f"{store.rstrip('/')}/bench_sync_{items}_{os.getpid()}"
    return f"{store}://"


def measure(concepts: int, mappings: int, change_count: int, stores: list[tuple[str, bool]],
            workdir: Path, synchronous: str) -> dict[str, Any]:
    """Build an export, serve it, sync it into each (store, with the incremental sync too) in a
    child; return the figures."""
    export = workdir / f"export_{concepts + mappings}.zip"
    started = time.perf_counter()
    info = build_export(export, concepts, mappings)
    info.update(build_seconds=time.perf_counter() - started, concepts=concepts,
                mappings=mappings)
    change_list = changes(concepts, mappings, change_count, max(concepts, mappings))
    context = multiprocessing.get_context("fork")
    ports = context.Queue()
    server = context.Process(target=serve, args=(export, info, change_list, ports), daemon=True)
    server.start()
    runs: dict[str, Any] = {}
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=300)}"
        for store, incremental in stores:
            uri = store_uri(store, workdir, concepts + mappings, synchronous)
            requests.post(f"{url}/_bench/reset", timeout=10)
            runs[store] = run_child("--child", "sync", "--server", url, "--store", uri,
                                    "--work-dir", str(workdir),
                                    *(["--incremental"] if incremental else []))
            database = workdir / f"bench-{concepts + mappings}.db"
            if database.exists():
                runs[store]["database_mb"] = database.stat().st_size / 2**20
            for leftover in workdir.glob("bench-*.db*"):
                leftover.unlink()
    finally:
        server.terminate()
        server.join()
    baseline = run_child("--child", "json-load", "--export", str(export))
    export.unlink()
    return {"items": concepts + mappings, "export": info, "runs": runs, "json_load": baseline}


def report(label: str, figures: dict[str, Any]) -> None:
    """Print one size's runs."""
    base = figures["json_load"]
    print(f"{label}: {figures['items']:,} items, export {figures['export']['size'] / 2**20:.1f} MiB "
          f"(built in {figures['export']['build_seconds']:.1f}s)")
    for store, run in figures["runs"].items():
        full = run["full"]
        size = f"  database {run['database_mb']:.0f} MiB" if "database_mb" in run else ""
        print(f"  {store:9} first sync  {full['seconds']:6.2f}s  "
              f"{full['items'] / full['seconds']:>8,.0f} items/s  peak RSS "
              f"{full['maxrss_mb']:5.0f} MiB  ok={full['ok']} verified={full['verified']}{size} "
              f"{full['error'] or ''}")
        if "incremental" in run:
            inc = run["incremental"]
            print(f"  {store:9} {inc['items']:,} changes in {inc['pages']} pages  "
                  f"{inc['seconds']:6.2f}s  {inc['items'] / max(inc['seconds'], 1e-9):>8,.0f} "
                  f"items/s  peak RSS {inc['maxrss_mb']:5.0f} MiB  ok={inc['ok']} "
                  f"verified={inc['verified']} {inc['error'] or ''}")
    print(f"  json.load        {base['seconds']:6.2f}s  peak RSS {base['maxrss_mb']:5.0f} MiB",
          flush=True)


def main() -> None:
    """Parse arguments; run the benchmark or act as a child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=100_000)
    parser.add_argument("--mappings", type=int, default=None, help="default: 2 x concepts")
    parser.add_argument("--small", type=int, default=10_000, help="items of the small RSS run")
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--mongomock-items", default="10000,30000",
                        help="sizes of the SQLite vs mongomock runs, comma-separated (mongomock "
                             "grows quadratically: 300k items take well over 15 minutes)")
    parser.add_argument("--no-mongomock", action="store_true", help="skip the contrast runs")
    parser.add_argument("--contrast-store", default="mongomock",
                        help="the contrast runs' MongoDB: mongomock, mongodb://... or 'ferretdb' "
                             "(one started for the run)")
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite's synchronous setting")
    parser.add_argument("--sections", default="large,small,contrast",
                        help="which runs: large (SQLite at full size), small (SQLite at --small "
                             "items; with large: the RSS ratio), contrast (both stores at "
                             "--mongomock-items)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--incremental", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    mappings = 2 * args.concepts if args.mappings is None else args.mappings
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory(prefix="termsync-bench-") as tmp:
        workdir = Path(tmp)
        if "large" in sections:
            big = measure(args.concepts, mappings, args.changes, [("sqlite", True)], workdir,
                          args.synchronous)
            report("large", big)
        if "small" in sections:
            small_concepts = args.small // 3
            small = measure(small_concepts, args.small - small_concepts, args.changes,
                            [("sqlite", False)], workdir, args.synchronous)
            report("small", small)
        if {"large", "small"} <= sections:
            ratio = big["runs"]["sqlite"]["full"]["maxrss_mb"] / \
                small["runs"]["sqlite"]["full"]["maxrss_mb"]
            base_ratio = big["json_load"]["maxrss_mb"] / small["json_load"]["maxrss_mb"]
            print(f"peak RSS {big['items']:,} vs {small['items']:,} items: sqlite first sync "
                  f"x{ratio:.2f}, json.load x{base_ratio:.2f}", flush=True)
        from tests.ferretdb import resolve

        contrast_store = resolve(args.contrast_store)
        for items in ([] if args.no_mongomock or "contrast" not in sections
                      else [int(n) for n in args.mongomock_items.split(",") if n]):
            contrast = measure(items // 3, items - items // 3, args.changes,
                               [("sqlite", True), (contrast_store, True)], workdir,
                               args.synchronous)
            report("contrast", contrast)
    print(json.dumps({"cpu": os.cpu_count(), "python": sys.version.split()[0],
                      "synchronous": args.synchronous}))


if __name__ == "__main__":
    main()
