"""Where a webhook may point (SSRF rules) and how one delivery is sent.

A target is refused unless it is `http` or `https`, carries no credentials, and every address its
host resolves to is a public (globally routable) one: loopback, private (10/8, 172.16/12,
192.168/16, fc00::/7), link-local (169.254/16: cloud metadata; fe80::/10), shared (100.64/10),
unspecified, multicast and reserved addresses are refused, and so are IPv4 addresses written
inside IPv6 (::ffff:127.0.0.1). The admin setting WEBHOOK_ALLOW_PRIVATE_TARGETS lets private,
loopback and link-local addresses through (a closed network, tests); never the rest.

The check runs when a hook is saved and again at every delivery, and the delivery connects to
the very address that was checked (the Host header and TLS name stay the host's), so a name
that resolves to a public address when checked and to 127.0.0.1 a moment later (DNS
rebinding) cannot steer a delivery inside. Redirects are never followed: a 3xx is a failure.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..domain.errors import Invalid

MAX_URL_LENGTH = 2000
RESPONSE_EXCERPT = 200  # bytes of a failed answer's body kept in the log
TOTAL_TIMEOUTS = 3  # an attempt ends after this many timeouts in all, however it trickles


class TargetRefused(Exception):
    """The target URL may not be delivered to; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked target: where to connect (`address`), and what the request names."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_refusal(address: IPAddress, allow_private: bool) -> str | None:
    """Why a delivery may not go to this address, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_refusal(address.ipv4_mapped, allow_private)
    if address.is_unspecified or address.is_multicast:
        return f"{address} is not a host address"
    if address.is_global:
        return None
    private = address.is_private or address.is_loopback or address.is_link_local \
        or address in ipaddress.ip_network("100.64.0.0/10")
    if allow_private and private:
        return None
    kind = ("a loopback" if address.is_loopback else "a link-local" if address.is_link_local
            else "a private" if private else "a reserved")
    return (f"{address} is {kind} address; private targets are refused unless the admin "
            "setting WEBHOOK_ALLOW_PRIVATE_TARGETS allows them")


def parse_target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of a target URL; TargetRefused when its form is
    not allowed (another scheme, credentials, no host)."""
    if len(url) > MAX_URL_LENGTH or any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise TargetRefused("the URL is too long or contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL cannot be read ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http and https targets are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRefused("credentials in the URL are not allowed (the signature "
                            "authenticates deliveries)")
    host = parts.hostname
    if not host:
        raise TargetRefused("the URL names no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


def resolve_target(url: str, allow_private: bool) -> Target:
    """Check a target URL and the addresses its host resolves to now; the first allowed
    address is where a delivery connects. TargetRefused if any address is refused (a name
    that also resolves inside is not a public target) or the name does not resolve."""
    scheme, host, port, path = parse_target(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"{host} does not resolve ({exc})") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
        if not addresses:
            raise TargetRefused(f"{host} does not resolve")
    for address in addresses:
        refusal = address_refusal(address, allow_private)
        if refusal is not None:
            raise TargetRefused(refusal if literal is not None else f"{host} resolves to {refusal}")
    return Target(scheme, host, port, path, str(addresses[0]))


def check_target(url: str, allow_private: bool) -> None:
    """The check a hook's URL passes when it is saved: Invalid (400) with the reason."""
    try:
        resolve_target(url, allow_private)
    except TargetRefused as exc:
        raise Invalid(f"This webhook URL is refused: {exc}.", errors={"url": [str(exc)]}) from None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a checked address, whatever its host name resolves to now."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address, its certificate checked against the host."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout,
                         context=ssl.create_default_context())
        self.address = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt gave: HTTP status (None: no answer), time taken, error."""

    status: int | None
    duration_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """End an attempt that ran out of time: a shutdown wakes a thread blocked reading."""
    expired.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         allow_private: bool) -> Attempt:
    """POST `body` to a target once: checked (and pinned) first, no redirects, `timeout`
    seconds for the connection and for each read, and TOTAL_TIMEOUTS times that in all (a
    receiver that trickles its answer a byte at a time is cut off)."""
    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 1)

    try:
        target = resolve_target(url, allow_private)
    except TargetRefused as exc:
        return Attempt(None, took(), f"refused: {exc}")
    connection: http.client.HTTPConnection = (
        _PinnedHTTPSConnection(target, timeout) if target.scheme == "https"
        else _PinnedHTTPConnection(target, timeout))
    expired = threading.Event()
    deadline = threading.Timer(timeout * TOTAL_TIMEOUTS, _cut, args=(connection, expired))
    deadline.daemon = True
    deadline.start()
    try:
        connection.request("POST", target.path, body=body,
                           headers=dict(headers, **{"Content-Length": str(len(body))}))
        response = connection.getresponse()
        excerpt = response.read(RESPONSE_EXCERPT)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Attempt(None, took(), f"{exc.__class__.__name__}: {exc}" if str(exc)
                       else exc.__class__.__name__)
    finally:
        deadline.cancel()
        connection.close()
    if expired.is_set():  # what was read before the cut is no answer
        return Attempt(None, took(), f"no complete answer within {timeout * TOTAL_TIMEOUTS:g} s")
    if 300 <= status < 400:
        location = response.getheader("Location") or "nowhere"
        return Attempt(status, took(), f"redirect to {location[:200]} not followed")
    if not 200 <= status < 300:
        text = excerpt.decode("utf-8", "replace").strip()
        return Attempt(status, took(), f"HTTP {status}" + (f": {text}" if text else ""))
    return Attempt(status, took(), None)
