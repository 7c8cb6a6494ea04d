"""gunicorn settings for termsync: `gunicorn -c gunicorn.conf.py wsgi:app`, behind nginx with
deploy/nginx/termsync.conf (docs/deployment.md).

Every value can be changed through the environment without editing this file. Any number of
worker processes share the database, the embedded SQLite file as well as a MongoDB.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import shutil
from typing import Any


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


# Loopback only: nginx in front (deploy/nginx/termsync.conf) is what clients talk to. gunicorn
# sends its own clock as `Date` whatever the application says, and the OpenMRS module sends
# `Date` back as its next `updatedSince`: served bare, a snapshot larger than one answer loses
# the rest for good. `when_ready` warns loudly when this is bound anywhere else.
bind = os.environ.get("TERMSYNC_BIND", "127.0.0.1:8000")
# Processes: CPU-bound JSON/zip work scales with processes, not threads (the GIL).
workers = _env_int("GUNICORN_WORKERS", _env_int("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads per process: some keep a process answering while others stream files to slow clients;
# the Python work itself is serialised by the GIL, so more threads on busy CPUs only lengthen
# the latency tail (p99 of 16 concurrent probes: 19-21 ms with 8, 14-17 ms with 4, 11-13 ms
# with 2; docs/performance.md, HEAD probes). Idle keep-alive connections hold no thread.
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)
# A request that takes longer than this kills its worker; exports stream from storage, so this
# bounds slow clients only through the send buffer. Downloads of large exports by slow clients
# should go through a buffering proxy (see docs/deployment.md).
timeout = _env_int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
backlog = _env_int("GUNICORN_BACKLOG", 2048)
# Recycle processes now and then (with jitter, so they do not all restart together): rarely. A
# process boots in about a second of CPU and serves nothing meanwhile, so at monitoring's rates
# (thousands of probes a second) recycling every 10,000 requests booted a process every few
# seconds (docs/performance.md, HEAD probes); termsync's memory stays flat, so this is only a
# safety net.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 1_000_000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 100_000)
# Each process opens its own database connections after the fork (neither pymongo nor sqlite3
# connections survive a fork).
preload_app = False
# The app writes one access line per request itself (with the request id); gunicorn's would
# duplicate it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Addresses of the load balancers allowed to set X-Forwarded-* (gunicorn's own check; termsync
# additionally needs TERMSYNC_TRUSTED_PROXIES=<hops> to use them).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = "termsync"
# Each process listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new
# connections over them. On one shared socket, whichever process wakes first accepts a whole
# burst of keep-alive connections (a load balancer's pool, a monitor's clients) and keeps them,
# while the others idle: measured, half the throughput of HEAD probes (docs/performance.md).
# `on_starting` turns this off where it cannot work: an ephemeral port (":0" would give each
# process a port of its own), a unix socket, or sockets handed over by systemd.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "true").lower() not in ("0", "false", "no")


def on_starting(server: Any) -> None:
    """Keep one shared socket where per-process sockets cannot work; prepare multiprocess
    metrics (stale files of an earlier run would be summed in)."""
    per_process = all(isinstance(address, tuple) and address[1] != 0
                      for address in server.cfg.address)
    if server.cfg.reuse_port and (not per_process or os.environ.get("LISTEN_FDS")):
        server.cfg.set("reuse_port", False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def reachable_from_outside(address: Any) -> bool:
    """Whether a listening address is more than loopback (a unix socket or 127.x is not)."""
    if not isinstance(address, tuple):
        return False
    host = str(address[0]).strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: whatever it resolves to, it was not asked to be loopback


def when_ready(server: Any) -> None:
    """Warn when gunicorn listens where clients can reach it without the proxy."""
    exposed = [address for address in server.cfg.address if reachable_from_outside(address)]
    if exposed:
        server.log.warning(
            "termsync: gunicorn listens on %s, reachable without the proxy. Clients that talk to "
            "gunicorn directly get gunicorn's clock as `Date` (it drops termsync's): OpenMRS "
            "snapshot subscribers then skip every item past the first answer, silently. Bind "
            "to loopback and serve through nginx with deploy/nginx/termsync.conf "
            "(docs/deployment.md).", ", ".join(str(address) for address in exposed))


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges in multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
