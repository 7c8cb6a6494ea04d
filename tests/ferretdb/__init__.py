"""FerretDB for tests and benchmarks: a MongoDB-wire server, built from `main.go` beside this file.

The binary is built with Go from the Go module proxy (FerretDB v1.24.2, pinned in `go.mod` and
`go.sum`) into a cache (`$XDG_CACHE_HOME/termsync/`, else `~/.cache/termsync/`), named by a hash of
its sources, so it is built once per machine; `.ci/run` builds it before the tests
(`python3 -m tests.ferretdb build`), and the first test that needs it builds it when it is
missing and `go` is there. `FERRETDB_BIN` names a binary to use instead. Without either, the tests
that need it skip, saying why.

`shared()` is one server per test process, on FerretDB's SQLite backend in a temporary directory,
started on first use and stopped at exit; `TEST_DATABASE_URI=ferretdb` runs the whole suite on it.
`FerretDB(...)` starts one more (the multi-host test runs one on PostgreSQL).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).resolve().parent
SOURCES = ("main.go", "go.mod", "go.sum")
START_TIMEOUT = 60.0  # seconds: a cold machine opens the SQLite backend slowly


class FerretDBUnavailable(RuntimeError):
    """No FerretDB binary, and no Go toolchain to build one (the message says what to do)."""


def cache_directory() -> Path:
    """Where built binaries are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "termsync"


def binary_path() -> Path:
    """The binary FERRETDB_BIN names, else the cached build of these very sources."""
    named = os.environ.get("FERRETDB_BIN")
    if named:
        return Path(named)
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE / name).read_bytes())
    return cache_directory() / f"ferretdb-termsync-{digest.hexdigest()[:16]}"


def build() -> Path:
    """The binary, built first if it is not there yet; FerretDBUnavailable without Go."""
    target = binary_path()
    if target.is_file():
        return target
    if os.environ.get("FERRETDB_BIN"):
        raise FerretDBUnavailable(f"FERRETDB_BIN={target} is not a file")
    go = shutil.which("go")
    if go is None:
        raise FerretDBUnavailable(
            f"no FerretDB binary at {target} and no `go` on PATH to build it from "
            f"{SOURCE.relative_to(SOURCE.parents[1])}/ (install Go, or set FERRETDB_BIN, or "
            "TEST_MONGO_URI to a MongoDB server)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    # GOTOOLCHAIN=local: build with the Go that is here, never download another toolchain.
    environment = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    done = subprocess.run([go, "build", "-trimpath", "-o", str(partial), "."], cwd=SOURCE,
                          env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise FerretDBUnavailable(f"building FerretDB failed:\n{done.stderr[-4000:]}")
    os.replace(partial, target)  # whole or not at all: a concurrent build loses nothing
    return target


class FerretDB:
    """One FerretDB process on SQLite (a directory) or PostgreSQL (a URL); `uri` once started."""

    def __init__(self, *, sqlite: str | None = None, postgresql: str | None = None,
                 listen: str = "127.0.0.1:0", command_prefix: tuple[str, ...] = ()) -> None:
        if (sqlite is None) == (postgresql is None):
            raise ValueError("give exactly one of sqlite= or postgresql=")
        backend = ["-sqlite", sqlite] if sqlite is not None else ["-postgresql", str(postgresql)]
        self.command = [*command_prefix, str(build()), "-listen", listen, *backend]
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True)
        self.uri = self._announced_uri()

    def _announced_uri(self) -> str:
        """The URI the server prints once it accepts connections (it prints nothing before)."""
        assert self.process.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        if not line or not line[0].startswith("mongodb://"):
            self.stop()
            raise RuntimeError(f"FerretDB did not start ({' '.join(self.command)}):\n"
                               f"{self.stderr()}")
        return line[0].strip()

    def stderr(self) -> str:
        """What the server logged (warnings and errors)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


_shared: FerretDB | None = None
_shared_error: FerretDBUnavailable | None = None
_shared_guard = threading.Lock()


def shared() -> str:
    """The URI of this process's FerretDB (SQLite backend), started on first use."""
    global _shared, _shared_error
    with _shared_guard:
        if _shared_error is not None:
            raise _shared_error
        if _shared is None:
            directory = tempfile.mkdtemp(prefix="termsync-ferretdb-")
            try:
                _shared = FerretDB(sqlite=directory)
            except FerretDBUnavailable as error:
                _shared_error = error
                raise
            atexit.register(shutil.rmtree, directory, True)
            atexit.register(_shared.stop)
        return _shared.uri
