"""Benchmark: monitoring's HEAD probes of a released version's export, through gunicorn on SQLite.

    .venv/bin/python bench/probes.py                  # 2 workers; 1 and 16 clients, 8 s each
    .venv/bin/python bench/probes.py --workers 4 --clients 1,16,64 --threads 8
    GUNICORN_REUSE_PORT=false GUNICORN_MAX_REQUESTS=10000 .venv/bin/python bench/probes.py
    git worktree add /tmp/main main && \
      .venv/bin/python bench/probes.py --token --baseline-tree /tmp/main --rounds 2

gunicorn runs with gunicorn.conf.py as production does, on a fixed free port (so that every
process has a socket of its own); its settings come from the environment as there.

A new SQLite database gets a released source version with a built export (not timed); gunicorn
serves it with --workers processes; ApacheBench (`ab`, Debian's apache2-utils: a load generator in
C, so that it takes little of the CPUs it shares with the server) sends keep-alive HEAD requests
of the export URL from each number of concurrent clients, after a warm-up burst that every
worker has booted for. Reported: requests/s, p50 and p99 latency, and how many workers gunicorn
booted during the measured runs (a recycled worker serves nothing while it boots, so that number
should be 0). The baseline, measured in the same run the same way, is `GET /healthz` (the
cheapest route: no database), as a ratio.

`--token`: the probes carry the admin token (`Authorization: Token ...`), as a subscriber's or
a private source's monitoring does: each is then also a token check (and, where the code records
a token's last use, what that costs). `--baseline-tree PATH`: the same measurement of another
checkout (say main), its own database seeded by its own code, in the same run, alternating
`--rounds` times between the two; reported as this tree's probe rate over the baseline's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TOKEN = "bench-probes-token-0123456789abcdef"
EXPORT = "/orgs/Bench/sources/Probed/v1/export/"


def seed(work: str, root: str) -> dict[str, str]:
    """A released version with its export built, by the code of `root` (in a process of its
    own: its schema is its own); the server's environment."""
    env = {"TERMSYNC_DATABASE_URI": f"sqlite:///{work}/bench.db",
           "TERMSYNC_EXPORT_DIR": f"{work}/exports", "TERMSYNC_ADMIN_TOKEN": TOKEN,
           "TERMSYNC_ACCESS_LOG": "false", "TERMSYNC_LOG_LEVEL": "WARNING",
           "TERMSYNC_BACKGROUND_WORKERS": "0"}
    subprocess.run([sys.executable, os.path.abspath(__file__), "--seed-into", work, "--root",
                    root], check=True, cwd=root,
                   env={key: value for key, value in os.environ.items()
                        if not key.startswith("TERMSYNC_")})
    return env


def seed_into(work: str, root: str) -> None:
    """What `seed` runs: the data, written by the code of `root`."""
    sys.path.insert(0, root)
    from app import create_app

    app = create_app({"DATABASE_URI": f"sqlite:///{work}/bench.db", "TESTING": True,
                      "EXPORT_DIR": f"{work}/exports", "ADMIN_TOKEN": TOKEN,
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


class BootCounter:
    """Reads gunicorn's log (so that its pipe never fills) and counts the workers it boots."""

    def __init__(self, log: Any) -> None:
        self.count = 0
        threading.Thread(target=self._read, args=(log,), daemon=True).start()

    def _read(self, log: Any) -> None:
        try:
            for line in log:
                if "Booting worker" in line:
                    self.count += 1
        except (ValueError, OSError):
            return  # the log was closed: the server stopped


def serving(url: str) -> bool:
    try:
        return requests.head(url, timeout=10).status_code == 200
    except requests.ConnectionError:
        return False


def ab(url: str, clients: int, seconds: float, head: bool,
       token: str | None = None) -> dict[str, float]:
    """ApacheBench's figures for one level."""
    command = ["ab", "-q", "-k", "-c", str(clients), "-t", str(seconds), "-n", "10000000"]
    if head:
        command.append("-i")
    if token:
        command.extend(["-H", f"Authorization: Token {token}"])
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = {}
    for key, pattern in (("requests_per_second", r"Requests per second:\s+([\d.]+)"),
                         ("failed", r"Failed requests:\s+(\d+)"),
                         ("non_2xx", r"Non-2xx responses:\s+(\d+)"),
                         ("p50_ms", r"\n\s+50%\s+(\d+)"), ("p99_ms", r"\n\s+99%\s+(\d+)")):
        match = re.search(pattern, output)
        figures[key] = float(match.group(1)) if match else float("nan")
    if figures["non_2xx"] == figures["non_2xx"] and figures["non_2xx"] > 0:
        raise SystemExit(f"{url}: {figures['non_2xx']:.0f} answers were not 2xx")
    return figures


def measure(root: str, args: argparse.Namespace, label: str) -> dict[int, float]:
    """One tree's figures, printed: its probes' requests/s by number of clients."""
    work = tempfile.mkdtemp(prefix="termsync-bench-probes-")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(seed(work, root), GUNICORN_WORKERS=str(args.workers), GUNICORN_LOG_LEVEL="info")
    if args.threads is not None:
        env["GUNICORN_THREADS"] = str(args.threads)
    # A fixed port, as production binds: each process then has a socket of its own
    # (gunicorn.conf.py, reuse_port), which an ephemeral port (":0") would not allow.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    token = TOKEN if args.token else None
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b",
                               f"127.0.0.1:{port}", "wsgi:app"], cwd=root, env=env,
                              stderr=subprocess.PIPE, text=True)
    rates: dict[int, float] = {}
    try:
        boots = BootCounter(server.stderr)
        deadline = time.monotonic() + 60
        while not serving(base + EXPORT):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("gunicorn does not serve the export")
            time.sleep(0.2)  # gunicorn's workers still booting
        while boots.count < args.workers and time.monotonic() < deadline:
            time.sleep(0.2)  # every worker boots (each says so once)
        ab(base + EXPORT, 16, 2.0, head=True, token=token)  # warm-up, not reported
        booted_before = boots.count
        for clients in (int(text) for text in args.clients.split(",")):
            probe = ab(base + EXPORT, clients, args.seconds, head=True, token=token)
            health = ab(base + "/healthz", clients, args.seconds, head=False)
            rates[clients] = probe["requests_per_second"]
            print(f"{label}: {clients:>3} clients: HEAD export "
                  f"{probe['requests_per_second']:7.0f}/s p50 {probe['p50_ms']:.0f} ms "
                  f"p99 {probe['p99_ms']:.0f} ms (failed {probe['failed']:.0f}); GET /healthz "
                  f"{health['requests_per_second']:7.0f}/s p99 {health['p99_ms']:.0f} ms; "
                  f"ratio {probe['requests_per_second'] / health['requests_per_second']:.2f}",
                  flush=True)
        print(f"{label}: workers booted during the measured runs: "
              f"{boots.count - booted_before}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()
        shutil.rmtree(work, ignore_errors=True)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int,
                        help="threads per process (default: gunicorn.conf.py's)")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--token", action="store_true",
                        help="probes carry the admin token (a token check each)")
    parser.add_argument("--baseline-tree", help="another checkout to measure the same way")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --baseline-tree: how many times to measure each, alternating")
    parser.add_argument("--seed-into", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_into:
        seed_into(args.seed_into, args.root)
        return 0
    if shutil.which("ab") is None:
        raise SystemExit("bench/probes.py needs ApacheBench: apt-get install apache2-utils")
    threads = args.threads or "the configured"
    print(f"gunicorn {args.workers} workers x {threads} threads, SQLite; "
          f"{os.cpu_count()} CPUs shared with ab; probes "
          f"{'with' if args.token else 'without'} a token")
    if not args.baseline_tree:
        measure(ROOT, args, "this tree")
        return 0
    trees = {"this tree": ROOT, "baseline": os.path.abspath(args.baseline_tree)}
    rates: dict[str, list[dict[int, float]]] = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, root in trees.items():
            rates[label].append(measure(root, args, label))
    for clients in (int(text) for text in args.clients.split(",")):
        ours = [rate[clients] for rate in rates["this tree"]]
        theirs = [rate[clients] for rate in rates["baseline"]]
        print(f"{clients:>3} clients: this tree / baseline = "
              f"{sum(ours) / sum(theirs):.2f} (rounds: "
              f"{', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(ours, theirs, strict=True))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
