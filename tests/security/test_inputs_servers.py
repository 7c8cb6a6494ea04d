"""A request body that ends early is refused (400) and never applied, under both servers
termsync runs on: gunicorn (`gunicorn -c gunicorn.conf.py wsgi:app`, which hands the app the
bytes that came and then an end of stream) and werkzeug's (`termsync serve`).

The client sends its headers and part of the body, then half-closes the connection (the
request can still be answered). Bodies are cut where what arrived is itself valid: a JSON
concept followed by padding that never comes, JSON lines cut at a line end, a multipart upload
without its closing boundary, a chunked body without its last chunk.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN, ADMIN_TOKEN, concept

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
URL = "/orgs/O/sources/S/"
LISTENING = re.compile(r"(?:Listening at: |termsync serving on )http://127\.0\.0\.1:(\d+)")
SERVERS = {"gunicorn": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "1",
                        "-b", "127.0.0.1:0", "wsgi:app"],
           "termsync serve": [sys.executable, "-m", "app.cli", "serve", "--port", "0"]}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A server process on a free port, with org O and source S; yields its port."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(TERMSYNC_DATABASE_URI=f"sqlite:///{tmp_path / 'server.db'}",
               TERMSYNC_ADMIN_TOKEN=ADMIN_TOKEN, TERMSYNC_EXPORT_DIR=str(tmp_path / "exports"),
               TERMSYNC_IMPORT_DIR=str(tmp_path / "imports"), TERMSYNC_LOG_LEVEL="WARNING",
               TERMSYNC_BACKGROUND_WORKERS="0", PYTHONUNBUFFERED="1")
    log = tmp_path / "server.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(SERVERS[request.param], env=env, cwd=ROOT, stdout=handle,
                                   stderr=handle)
    try:
        until = time.monotonic() + DEADLINE
        while not (found := LISTENING.search(log.read_text(errors="replace"))):
            assert process.poll() is None and time.monotonic() < until, log.read_text()
            time.sleep(0.05)
        port = int(found.group(1))
        base = f"http://127.0.0.1:{port}"
        assert requests.post(f"{base}/orgs/", json={"id": "O"}, headers=ADMIN,
                             timeout=30).status_code == 201
        assert requests.post(f"{base}/orgs/O/sources/", json={"id": "S"}, headers=ADMIN,
                             timeout=30).status_code == 201
        yield port
    finally:
        process.terminate()
        process.wait(DEADLINE)


def half_closed(port: int, head: str, body: bytes) -> tuple[int, dict[str, str]]:
    """Send the request line and headers, then `body`, then close the sending side; the
    status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head.encode() + b"\r\n" + body)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")


def headers(method: str, path: str, content_type: str, length: int | None) -> str:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {ADMIN_TOKEN}"
            f"\r\nContent-Type: {content_type}\r\n{framing}\r\nConnection: close\r\n")


LINE = json.dumps(dict(concept("imported"), type="Concept", owner="O", source="S")).encode()


def test_short_bodies_are_refused_and_never_applied(server: int) -> None:
    base = f"http://127.0.0.1:{server}"
    body = json.dumps(concept("sent")).encode()
    status, answer = half_closed(server, headers("POST", f"{URL}concepts/", "application/json",
                                                 len(body) + 64), body)
    assert status == 400 and "ended before" in answer["message"], answer
    status, answer = half_closed(server, headers("POST", f"{URL}concepts/", "application/json",
                                                 None), b"%x\r\n%s\r\n" % (len(body), body))
    assert status == 400 and "ended before" in answer["message"], answer  # no last chunk
    assert requests.get(f"{base}{URL}concepts/sent/", timeout=30).status_code == 404

    lines = LINE + b"\n"
    status, answer = half_closed(server, headers("POST", "/importers/bulk-import/",
                                                 "application/x-ndjson", len(lines) * 2), lines)
    assert status == 400 and "ended before" in answer["message"], answer
    upload = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n'
              b"Content-Type: application/x-ndjson\r\n\r\n" + lines)
    status, answer = half_closed(server, headers("POST", "/importers/bulk-import/",
                                                 "multipart/form-data; boundary=B",
                                                 len(upload) + 8), upload)
    assert status == 400 and "ended before" in answer["message"], answer
    status, answer = half_closed(server, headers("POST", "/importers/bulk-import/",
                                                 "application/x-ndjson", None),
                                 b"%x\r\n%s\r\n" % (len(lines), lines))
    assert status == 400 and "ended before" in answer["message"], answer
    assert requests.get(f"{base}/importers/bulk-import/", headers=ADMIN, timeout=30).json() == []

    # The same requests whole are applied.
    assert requests.post(f"{base}{URL}concepts/", data=body, headers={
        **ADMIN, "Content-Type": "application/json"}, timeout=30).status_code == 201
    assert requests.post(f"{base}/importers/bulk-import/", data=lines, headers={
        **ADMIN, "Content-Type": "application/x-ndjson"}, timeout=30).status_code == 202
