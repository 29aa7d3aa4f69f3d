"""Which HTTP proxy a URL goes through, and a socket that gets there.

One decision for the four ways we reach Spooled (WebSocket, SSE, login, REST): the
``proxy`` option when set (``"off"`` or ``""``: never a proxy), else the standard
``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` variables (lowercase first, read by
:func:`urllib.request.getproxies`); ``NO_PROXY`` (host, domain suffix, ``host:port``,
an IP network, ``*``) sends a host direct either way, as curl does. Only ``http://``
proxies are spoken to, with an HTTP ``CONNECT`` tunnel (Basic auth from the URL's
user-info); the proxy's password never leaves :class:`Proxy` except on the wire.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import socket
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import h11
import httpx

from spooled_integrations._redact import redact_url
from spooled_integrations.errors import SpooledConnectionError

__all__ = [
    "OFF",
    "Proxy",
    "ProxyError",
    "check_proxy_url",
    "connect_socket",
    "http_failure",
    "http_transport",
    "proxy_for",
    "proxy_refused",
    "via",
]

OFF = frozenset({"", "off"})
"""``proxy`` values that mean: no proxy, whatever the environment says."""
_HEAD_LIMIT = 64 * 1024


class ProxyError(SpooledConnectionError):
    """The proxy could not be reached or refused the tunnel (retried like any drop)."""


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` proxy; its repr and :attr:`shown` hide the password."""

    url: str = field(repr=False)
    host: str
    port: int
    source: str
    """Where the proxy came from: ``proxy`` (the option) or the variable's name."""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The URL for logs and errors (password hidden)."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r}, source={self.source!r})"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value, or ``None`` without a user."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def check_proxy_url(value: str) -> str:
    """``value`` stripped, if it is ``off``/empty or an ``http://host[:port]`` URL;
    :class:`ValueError` (password hidden) otherwise."""
    url = value.strip()
    if url.lower() in OFF:
        return url.lower()
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise ValueError(
            "must be 'off' or an http:// proxy URL such as http://proxy:3128 (user and "
            f"password allowed), got {redact_url(value)!r}"
        )
    return url


def proxy_for(url: str, setting: str | None) -> Proxy | None:
    """The proxy to reach ``url`` through, or ``None`` to go direct.

    ``setting`` is the ``proxy`` option: ``None`` reads the environment. A bad URL in
    a variable raises :class:`ProxyError` naming the variable (and is retried: the
    environment of a running process rarely changes, but the error stays visible).
    """
    if setting is not None and setting.strip().lower() in OFF:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    secure = parts.scheme in ("https", "wss")
    port = parts.port or (443 if secure else 80)
    proxies = urllib.request.getproxies()
    if _bypassed(host, port, proxies):
        return None
    if setting is not None:
        return _parse(setting, "proxy")
    scheme = "https" if secure else "http"
    for key in (scheme, "all"):
        if proxies.get(key):
            return _parse(proxies[key], f"{key.upper()}_PROXY")
    return None


def _bypassed(host: str, port: int, proxies: dict[str, str]) -> bool:
    """``NO_PROXY`` matching: the standard library's (names, suffixes, ``host:port``,
    ``*``; the system settings on macOS and Windows) plus IP networks (``10.0.0.0/8``),
    as curl and requests match them."""
    if urllib.request.proxy_bypass(f"{host}:{port}"):
        return True
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        for entry in proxies.get("no", "").split(","):
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry.strip(), strict=False):
                    return True
    return False


def _parse(value: str, source: str) -> Proxy:
    try:
        url = check_proxy_url(value)
    except ValueError as exc:
        raise ProxyError(f"the proxy in {source} {exc}") from None
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    return Proxy(
        url=url,
        host=parts.hostname or "",
        port=parts.port or 80,
        source=source,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def http_transport(url: str, setting: str | None, *, verify: bool) -> httpx.HTTPTransport:
    """httpx's transport for requests to ``url``'s server, through the proxy we chose.

    A transport of our own makes httpx skip its own reading of the proxy variables
    (``trust_env`` still reads ``SSL_CERT_FILE``), so ``"off"`` and ``NO_PROXY`` mean
    the same as on the streams.
    """
    proxy = proxy_for(url, setting)
    return httpx.HTTPTransport(verify=verify, proxy=proxy.url if proxy is not None else None)


def shown_proxy(url: str, setting: str | None) -> str | None:
    """The proxy a connection to ``url`` goes through, for status (password hidden):
    ``http://proxy:3128 (from HTTPS_PROXY)``, or ``None`` when it goes direct."""
    proxy = _quietly(url, setting)
    return None if proxy is None else f"{proxy.shown} (from {proxy.source})"


def via(url: str, setting: str | None) -> str:
    """`` (through the proxy …)`` for an error about a request to ``url``, or ``""``."""
    proxy = _quietly(url, setting)
    return "" if proxy is None else f" (through the proxy {proxy.shown} from {proxy.source})"


def http_failure(exc: httpx.HTTPError, url: str, setting: str | None) -> str:
    """What went wrong with an httpx request to ``url``: with a proxy, a connect error
    is the proxy's (httpx connects to it first), said as the streams say it."""
    proxy = _quietly(url, setting)
    if proxy is not None and isinstance(exc, httpx.ConnectError):
        return f"could not reach the proxy {proxy.shown} (from {proxy.source}): {exc!r}"
    return f"{exc!r}{via(url, setting)}"


def _quietly(url: str, setting: str | None) -> Proxy | None:
    try:
        return proxy_for(url, setting)
    except ProxyError:
        return None


def proxy_refused(url: str, setting: str | None, what: str) -> ProxyError:
    """The error for a ``407`` a forwarding proxy answered to a plain-HTTP request."""
    return ProxyError(
        f"{what}: the proxy{via(url, setting)} answered HTTP 407 Proxy Authentication "
        "Required (check the user and password in the proxy URL)"
    )


def open_socket(
    url: str,
    setting: str | None,
    *,
    timeout: float,
    verify: bool,
    remember: Callable[[socket.socket], None],
) -> socket.socket:
    """The connection a stream's handshake goes over: TCP to ``url``'s host, direct or
    tunnelled through the proxy ``setting`` decides, then TLS for ``https``/``wss``
    (httpx's context: certifi and ``SSL_CERT_FILE``, as the login and REST calls)."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    sock = connect_socket(proxy_for(url, setting), host, port, timeout, remember)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if secure:
        context = httpx.create_ssl_context(verify=verify)
        context.set_alpn_protocols(["http/1.1"])
        sock = context.wrap_socket(sock, server_hostname=host)
        remember(sock)
    return sock


def connect_socket(
    proxy: Proxy | None,
    host: str,
    port: int,
    timeout: float,
    remember: Callable[[socket.socket], None],
) -> socket.socket:
    """A TCP socket to ``host:port``, direct or through ``proxy``'s ``CONNECT`` tunnel.

    ``remember`` gets the socket as soon as it exists, so a ``disconnect()`` can shut
    it down during the tunnel handshake. Proxy failures are :class:`ProxyError`s that
    name the proxy (password hidden); a direct failure is the plain :class:`OSError`.
    """
    if proxy is None:
        sock = socket.create_connection((host, port), timeout=timeout)
        remember(sock)
        return sock
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise ProxyError(
            f"could not reach the proxy {proxy.shown} (from {proxy.source}): {_detail(exc)}"
        ) from None
    remember(sock)
    try:
        _tunnel(sock, proxy, host, port)
    except OSError as exc:
        sock.close()
        raise ProxyError(
            f"the proxy {proxy.shown} (from {proxy.source}) dropped the tunnel to "
            f"{host}:{port}: {_detail(exc)}"
        ) from None
    except ProxyError:
        sock.close()
        raise
    return sock


def _tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    """Ask ``proxy`` for a tunnel to ``host:port``; return once it answered 2xx."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    headers = [("Host", target)]
    authorization = proxy.authorization()
    if authorization is not None:
        headers.append(("Proxy-Authorization", authorization))
    http = h11.Connection(h11.CLIENT)
    try:
        request = http.send(h11.Request(method="CONNECT", target=target, headers=headers))
        sock.sendall((request or b"") + (http.send(h11.EndOfMessage()) or b""))
        response = _read_answer(sock, http, proxy)
    except h11.ProtocolError as exc:
        raise ProxyError(
            f"the proxy {proxy.shown} (from {proxy.source}) answered CONNECT with "
            f"something that is not HTTP: {exc}"
        ) from None
    if not 200 <= response.status_code < 300:
        reason = response.reason.decode("latin-1", "replace")
        hint = (
            " (check the user and password in the proxy URL)" if response.status_code == 407 else ""
        )
        raise ProxyError(
            f"the proxy {proxy.shown} (from {proxy.source}) refused the tunnel to "
            f"{target}: HTTP {response.status_code} {reason}{hint}"
        )
    if http.trailing_data[0]:
        raise ProxyError(f"the proxy {proxy.shown} sent data before the tunnel was used")


def _read_answer(sock: socket.socket, http: h11.Connection, proxy: Proxy) -> h11.Response:
    received = 0
    while True:
        event = http.next_event()
        if isinstance(event, h11.Response):
            return event
        if event is h11.NEED_DATA:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the proxy closed the connection before answering")
            received += len(chunk)
            if received > _HEAD_LIMIT:
                raise ProxyError(f"the proxy {proxy.shown} sent an endless answer to CONNECT")
            http.receive_data(chunk)


def _detail(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
