"""Benchmark: monitoring's HEAD probes of a released version's export, through gunicorn on SQLite.

    .venv/bin/python bench/probes.py                  # 2 workers; 1 and 16 clients, 8 s each
    .venv/bin/python bench/probes.py --workers 4 --clients 1,16,64

A new SQLite database gets a released source version with a built export (not timed); gunicorn
serves it with --workers processes; ApacheBench (`ab`, Debian's apache2-utils: a load generator in
C, so that it takes little of the CPUs it shares with the server) sends keep-alive HEAD requests
of the export URL from each number of concurrent clients. Reported: requests/s, p50 and p99
latency. The baseline, measured in the same run the same way, is `GET /healthz` (the cheapest
route: no database), as a ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TOKEN = "bench-probes-token"
EXPORT = "/orgs/Bench/sources/Probed/v1/export/"


def seed(work: str) -> dict[str, str]:
    """A released version with its export built; the server's environment."""
    from app import create_app

    env = {"TERMSYNC_DATABASE_URI": f"sqlite:///{work}/bench.db",
           "TERMSYNC_EXPORT_DIR": f"{work}/exports", "TERMSYNC_ADMIN_TOKEN": TOKEN,
           "TERMSYNC_ACCESS_LOG": "false", "TERMSYNC_LOG_LEVEL": "WARNING",
           "TERMSYNC_BACKGROUND_WORKERS": "0"}
    app = create_app({"DATABASE_URI": env["TERMSYNC_DATABASE_URI"], "TESTING": True,
                      "EXPORT_DIR": env["TERMSYNC_EXPORT_DIR"], "ADMIN_TOKEN": TOKEN,
                      "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    headers = {"Authorization": f"Token {TOKEN}"}
    client.post("/orgs/", json={"id": "Bench"}, headers=headers)
    client.post("/orgs/Bench/sources/", json={"id": "Probed"}, headers=headers)
    for number in range(1000):
        client.post("/orgs/Bench/sources/Probed/concepts/", headers=headers, json={
            "id": str(number), "concept_class": "Diagnosis", "datatype": "N/A",
            "names": [{"name": f"Concept {number}", "locale": "en"}]})
    client.post("/orgs/Bench/sources/Probed/versions/", json={"id": "v1", "released": True},
                headers=headers)
    app.extensions["termsync.jobs"].run_until_idle()
    assert client.head(EXPORT).status_code == 200
    app.extensions["termsync.store"].close()
    return env


def ab(url: str, clients: int, seconds: float, head: bool) -> dict[str, float]:
    """ApacheBench's figures for one level."""
    command = ["ab", "-q", "-k", "-c", str(clients), "-t", str(seconds), "-n", "10000000"]
    if head:
        command.append("-i")
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = {}
    for key, pattern in (("requests_per_second", r"Requests per second:\s+([\d.]+)"),
                         ("failed", r"Failed requests:\s+(\d+)"),
                         ("p50_ms", r"\n\s+50%\s+(\d+)"), ("p99_ms", r"\n\s+99%\s+(\d+)")):
        match = re.search(pattern, output)
        figures[key] = float(match.group(1)) if match else float("nan")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("bench/probes.py needs ApacheBench: apt-get install apache2-utils")
    work = tempfile.mkdtemp(prefix="termsync-bench-probes-")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(seed(work), GUNICORN_WORKERS=str(args.workers),
               GUNICORN_THREADS=str(args.threads), GUNICORN_LOG_LEVEL="info")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b",
                               "127.0.0.1:0", "wsgi:app"], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        base = ""
        while not base:
            line = server.stderr.readline()
            if not line:
                raise SystemExit("gunicorn did not start")
            match = re.search(r"Listening at: (http://\S+)", line)
            base = match.group(1) if match else ""
        deadline = time.monotonic() + 60
        while requests.head(base + EXPORT, timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the export is not served")
            time.sleep(0.2)  # gunicorn's workers still booting
        print(f"gunicorn {args.workers} workers x {args.threads} threads, SQLite; "
              f"{os.cpu_count()} CPUs shared with ab")
        for clients in (int(text) for text in args.clients.split(",")):
            probe = ab(base + EXPORT, clients, args.seconds, head=True)
            health = ab(base + "/healthz", clients, args.seconds, head=False)
            print(f"{clients:>3} clients: HEAD export {probe['requests_per_second']:7.0f}/s "
                  f"p50 {probe['p50_ms']:.0f} ms p99 {probe['p99_ms']:.0f} ms "
                  f"(failed {probe['failed']:.0f}); GET /healthz "
                  f"{health['requests_per_second']:7.0f}/s p99 {health['p99_ms']:.0f} ms; "
                  f"ratio {probe['requests_per_second'] / health['requests_per_second']:.2f}",
                  flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
