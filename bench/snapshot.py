"""Benchmark: the OpenMRS module's snapshot request against sources of 10,000 and 200,000 items.

    .venv/bin/python bench/snapshot.py                      # 10k and 200k items
    .venv/bin/python bench/snapshot.py --sizes 10000,50000

For each size: a new SQLite database gets a public source of N items (half concepts with names and
descriptions, half mappings), loaded straight through the store (not timed); a server process
(`termsync serve`) starts on it; then, as the module does, one
`GET {source}?includeMappings=true&includeConcepts=true&includeRetired=true&limit=100000` with
`Compress: true`, read to the end. Reported: seconds to the last byte, bytes, items in the zip, and
the server's peak RSS (VmHWM) before and after the request. The answer is streamed, so the
server's peak should not grow with the size: the ratio of peak RSS between the largest and the
smallest size is printed (the target is at most 1.5).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Any

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TOKEN = "bench-snapshot-token-0123456789abcdef"
SOURCE = "/orgs/Bench/sources/Snap/"


def seed(uri: str, items: int) -> None:
    """A source of `items` item versions written through the store's bulk load."""
    from app.domain import ocl
    from app.model import CONCEPT, LIVE, MAPPING, SOURCE_TYPE, Source, version_url
    from app.store import open_store
    from app.timeutil import now_iso

    store = open_store(uri)
    store.ensure_schema()
    store.orgs.insert({"_id": "Bench", "id": "Bench", "public_access": "View", "members": []})
    now = now_iso()
    store.sources.insert(Source(url=SOURCE, id="Snap", repo_type=SOURCE_TYPE, owner="Bench",
                                owner_type="Organization", owner_url="/orgs/Bench/",
                                public_access="View", created_on=now, updated_on=now,
                                name="Snap"))
    concepts = items // 2
    batch: list[dict[str, Any]] = []
    for number in range(items):
        kind = CONCEPT if number < concepts else MAPPING
        item_id = str(number if kind == CONCEPT else number - concepts)
        url = ocl.item_url(SOURCE, kind, item_id)
        if kind == CONCEPT:
            data = {"concept_class": "Diagnosis", "datatype": "N/A", "extras": {},
                    "names": [{"name": f"Concept {number}", "locale": "en",
                               "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}],
                    "descriptions": [{"description": f"Description of concept {number}",
                                      "locale": "en"}]}
        else:
            data = {"map_type": "SAME-AS", "extras": {},
                    "from_concept_url": ocl.item_url(SOURCE, CONCEPT, str(number % concepts)),
                    "to_concept_url": ocl.item_url(SOURCE, CONCEPT,
                                                   str((number + 1) % concepts))}
        batch.append({"_id": version_url(url, number + 1), "source": SOURCE, "type": kind,
                      "id": item_id, "url": url, "seq": number + 1, "sup": LIVE, "deleted": False,
                      "retired": False, "updated_on": now, "created_on": now,
                      "created_by": "bench", "updated_by": "bench", "data": data})
        if len(batch) == 5000:
            store.items.load(batch)
            batch = []
    store.items.load(batch)
    store.sources.update(SOURCE, seq=items, last_updated=now)
    store.items.recompute_checksums()
    store.close()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_size(items: int) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="termsync-bench-snapshot-")
    uri = f"sqlite:///{work}/bench.db"
    started = time.perf_counter()
    seed(uri, items)
    seeded = time.perf_counter() - started
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(TERMSYNC_DATABASE_URI=uri, TERMSYNC_ADMIN_TOKEN=TOKEN,
               TERMSYNC_EXPORT_DIR=f"{work}/exports", TERMSYNC_LOG_LEVEL="WARNING",
               TERMSYNC_ACCESS_LOG="false", TERMSYNC_BACKGROUND_WORKERS="0")
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", "0"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        base = line.split("serving on ")[1].split()[0].rstrip("/")
        requests.get(f"{base}/orgs/", timeout=30)  # warm: the first request loads the app's parts
        before = peak_rss_mb(server.pid)
        begin = time.perf_counter()
        answer = requests.get(
            f"{base}{SOURCE.rstrip('/')}?includeMappings=true&includeConcepts=true"
            "&includeRetired=true&limit=100000", headers={"Compress": "true"}, timeout=600,
            stream=True)
        body = b"".join(answer.iter_content(1 << 20))
        seconds = time.perf_counter() - begin
        after = peak_rss_mb(server.pid)
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            export = json.loads(archive.read("export.json"))
        returned = len(export["concepts"]) + len(export["mappings"])
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
        assert returned == min(items, 100_000), returned
        return {"items": items, "seed_seconds": round(seeded, 1), "seconds": round(seconds, 2),
                "zip_mb": round(len(body) / 2**20, 1), "returned": returned,
                "num_found": int(answer.headers["num_found"]),
                "server_peak_rss_before_mb": round(before, 1),
                "server_peak_rss_after_mb": round(after, 1)}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if server.stdout is not None:
            server.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,200000")
    args = parser.parse_args()
    results = [run_size(int(size)) for size in args.sizes.split(",")]
    for result in results:
        print(json.dumps(result), flush=True)
    small, large = results[0], results[-1]
    print(f"server peak RSS {large['items']:,} vs {small['items']:,} items: "
          f"{large['server_peak_rss_after_mb']} / {small['server_peak_rss_after_mb']} MB = "
          f"{large['server_peak_rss_after_mb'] / small['server_peak_rss_after_mb']:.2f}; "
          f"seconds {large['seconds']} vs {small['seconds']} "
          f"({large['returned'] / large['seconds']:,.0f} vs "
          f"{small['returned'] / small['seconds']:,.0f} items/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
