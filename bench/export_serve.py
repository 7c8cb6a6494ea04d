"""Benchmark: serve a cached ~100 MB export through gunicorn on loopback.

    .venv/bin/python bench/export_serve.py              # ~100 MB export, 2000 HEAD probes
    .venv/bin/python bench/export_serve.py --mb 20 --probes 500

Setup (not timed): an embedded SQLite database (`sqlite:///<tmp>/termsync.db`) gets a public
source whose concepts carry random (incompressible) descriptions, so its zip is about --mb
megabytes; the export is built by the real job. gunicorn runs --workers processes with threads,
all on that one file.

Measured in the same run: reading the export file from disk (1 MiB blocks, page cache warm)
against downloading it from gunicorn (GET of the export URL, streamed to nowhere), as a ratio;
and HEAD probes of the export URL from 16 concurrent clients (keep-alive sessions): requests/s,
p50 and p99 latency.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Token {ADMIN_TOKEN}"}
SOURCE = "/orgs/Bench/sources/Served/"
EXPORT = f"{SOURCE}v1/export/"
BLOCK = 1024 * 1024


def prepare(directory: str, megabytes: int) -> dict[str, str]:
    """Build the export into a persisted embedded database; return the server's environment."""
    from app import create_app
    from app.domain import ocl
    from app.model import LIVE, version_url
    from app.timeutil import now_iso

    uri = f"sqlite:///{directory}/termsync.db"
    environment = {"TERMSYNC_DATABASE_URI": uri, "TERMSYNC_ACCESS_LOG": "false",
                   "TERMSYNC_EXPORT_DIR": f"{directory}/exports",
                   "TERMSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "TERMSYNC_BACKGROUND_WORKERS": "0",
                   "TERMSYNC_LOG_LEVEL": "WARNING", "TERMSYNC_EXPORT_ON_RELEASE": "false"}
    app = create_app({"DATABASE_URI": uri, "EXPORT_DIR": f"{directory}/exports",
                      "ADMIN_TOKEN": ADMIN_TOKEN, "TESTING": True, "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    client.post("/orgs/", json={"id": "Bench"}, headers=ADMIN)
    client.post("/orgs/Bench/sources/", json={"id": "Served"}, headers=ADMIN)
    store = app.extensions["termsync.store"]
    items = store.items
    now = now_iso()
    count = megabytes * 1024 * 1024 // 8400  # ~8.4 KB zipped per concept
    batch = []
    for number in range(count):
        url = ocl.item_url(SOURCE, "Concept", f"C{number:07d}")
        text = base64.b64encode(os.urandom(8192)).decode()
        batch.append({"_id": version_url(url, number + 1), "source": SOURCE, "type": "Concept",
                      "id": f"C{number:07d}", "url": url, "deleted": False, "retired": False,
                      "updated_on": now, "created_on": now, "created_by": "bench",
                      "updated_by": "bench", "seq": number + 1, "sup": LIVE,
                      "data": {"concept_class": "Misc", "datatype": "N/A",
                               "names": [{"name": f"Concept {number}", "locale": "en",
                                          "locale_preferred": True}],
                               "descriptions": [{"description": text, "locale": "en"}]}})
        if len(batch) == 5000:
            items.load(batch)
            batch = []
    items.load(batch)
    store.sources.update(SOURCE, seq=count, last_updated=now)
    items.recompute_checksums()
    client.post(f"{SOURCE}versions/", json={"id": "v1"}, headers=ADMIN)
    client.post(EXPORT, headers=ADMIN)  # GET never builds (OCL v2): a POST queues it
    app.extensions["termsync.jobs"].run_until_idle()
    answer = client.head(EXPORT)
    assert answer.status_code == 200, answer.status_code
    environment["BENCH_FILE"] = os.path.join(
        directory, "exports", answer.headers["ETag"].strip('"')[:2],
        answer.headers["ETag"].strip('"') + ".zip")
    store.close()
    return environment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_disk(path: str) -> float:
    """Seconds to read the file in 1 MiB blocks."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while handle.read(BLOCK):
            pass
    return time.perf_counter() - started


def download(url: str) -> tuple[float, int]:
    """Seconds to GET the url streaming to nowhere, and the byte count."""
    started = time.perf_counter()
    size = 0
    with requests.get(url, stream=True, timeout=60) as answer:
        answer.raise_for_status()
        for block in answer.iter_content(BLOCK):
            size += len(block)
    return time.perf_counter() - started, size


def probes(url: str, clients: int, total: int) -> dict[str, float]:
    """HEAD the url `total` times from `clients` threads with keep-alive sessions."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = total // clients
    failures: list[int] = []

    def run() -> None:
        session = requests.Session()
        mine = []
        for _ in range(per_client):
            started = time.perf_counter()
            answer = session.head(url, timeout=30)
            mine.append(time.perf_counter() - started)
            if answer.status_code != 200:
                failures.append(answer.status_code)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    assert not failures, failures[:5]
    return {"requests": len(latencies), "requests_per_second": round(len(latencies) / elapsed),
            "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the export (default 100)")
    parser.add_argument("--probes", type=int, default=2000, help="HEAD requests in all")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps(prepare(args.prepare, args.mb)))
        return 0
    directory = tempfile.mkdtemp(prefix="termsync-serve-")
    server = None
    try:
        started = time.perf_counter()
        prepared = subprocess.run([sys.executable, __file__, "--prepare", directory,
                                   "--mb", str(args.mb)], check=True, capture_output=True,
                                  text=True)
        environment = json.loads(prepared.stdout.strip().splitlines()[-1])
        setup_seconds = time.perf_counter() - started
        path = environment.pop("BENCH_FILE")
        port = free_port()
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        server = subprocess.Popen(
            [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
             "--worker-class", "gthread", "--threads", str(args.threads),
             "--log-level", "warning", "wsgi:app"],
            cwd=os.path.join(os.path.dirname(__file__), ".."),
            env=dict(os.environ, **environment), start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if requests.head(base + EXPORT, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("gunicorn did not come up")
            time.sleep(0.2)
        size = os.path.getsize(path)
        read_disk(path)  # warm the page cache for both sides
        disk = min(read_disk(path) for _ in range(3))
        head = requests.head(base + EXPORT, timeout=10)
        file_url = head.headers["exportURL"]
        downloads: dict[str, list[float]] = {"export_url": [], "file_url": []}
        for _ in range(3):
            for name, url in (("export_url", base + EXPORT), ("file_url", file_url)):
                seconds, got = download(url)
                assert got == size, (got, size)
                downloads[name].append(seconds)
        best = min(downloads["export_url"])
        curl_seconds = None
        if shutil.which("curl"):  # a client in C: the Python client is often the bottleneck
            timings = []
            for _ in range(3):
                answer = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                                         "%{time_total} %{size_download}", base + EXPORT],
                                        check=True, capture_output=True, text=True)
                seconds_text, got_text = answer.stdout.split()
                assert int(got_text) == size
                timings.append(float(seconds_text))
            curl_seconds = min(timings)
        probe = probes(base + EXPORT, args.clients, args.probes)
        result = {"export_mb": round(size / 1e6, 1), "setup_seconds": round(setup_seconds, 1),
                  "disk_read_mb_s": round(size / 1e6 / disk),
                  "download_export_url_mb_s": round(size / 1e6 / best),
                  "download_vs_disk": round(disk / best, 2),
                  "download_file_url_mb_s": round(size / 1e6 / min(downloads["file_url"])),
                  "curl_download_mb_s": round(size / 1e6 / curl_seconds) if curl_seconds else None,
                  "curl_download_vs_disk": round(disk / curl_seconds, 2) if curl_seconds else None,
                  "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread)",
                  "head_clients": args.clients, **{f"head_{k}": v for k, v in probe.items()}}
        print(json.dumps(result))
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
