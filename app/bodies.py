"""A request body that ends before its Content-Length is refused (400), never applied.

A client that half-closes its connection part way through a body leaves the server a shorter body
than it announced. werkzeug's development server then raises `ClientDisconnected`, but gunicorn
hands the application the bytes that came and then an end of stream, so a truncated JSON-lines
upload cut at a line end, or a JSON body padded with spaces, would be applied as if it were
whole. `WholeBodies` wraps every request's `wsgi.input` that has a Content-Length so that
reading past the end of what arrived raises `ShortBody` (a 400 through the app's error
handler) under any server: the JSON body is read whole before it is parsed, and an upload is
stored to a part file that is dropped when the stream raises (docs/security.md, Input).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ShortBody(ClientDisconnected):
    """The connection ended before the whole body arrived (as its Content-Length announced, or
    before its last chunk)."""

    description = ("The request body ended before it was complete (its Content-Length, or its "
                   "last chunk): nothing was applied. Send the whole body.")


class WholeBody(io.RawIOBase):
    """A request body of `length` bytes read from `stream`; ShortBody if the stream ends first."""

    def __init__(self, stream: Any, length: int) -> None:
        super().__init__()
        self.stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def _counted(self, data: bytes | None, asked: int) -> bytes:
        if asked > 0 and not data:
            raise ShortBody()
        data = data or b""
        self.remaining -= len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative), never past the announced end."""
        if self.remaining <= 0:
            return b""
        if size is None or size < 0:
            return self.readall()
        asked = min(size, self.remaining)
        return self._counted(self.stream.read(asked), asked)

    def readall(self) -> bytes:
        """The rest of the body."""
        parts = []
        while self.remaining > 0:
            parts.append(self.read(min(self.remaining, 1 << 20)))
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        """Read into `buffer` (as `read`)."""
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        """One line, never past the announced end."""
        if self.remaining <= 0:
            return b""
        asked = self.remaining if size is None or size < 0 else min(size, self.remaining)
        return self._counted(self.stream.readline(asked), asked)


class WholeBodies:
    """WSGI middleware: every body with a Content-Length is read through `WholeBody`."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isascii() and length.isdigit() and int(length) > 0 and "wsgi.input" in environ:
            environ["wsgi.input"] = WholeBody(environ["wsgi.input"], int(length))
        return self.app(environ, start_response)
