"""Proxies: every connection (WebSocket, SSE, login, REST) through a real CONNECT proxy.

The proxy is proxy.py (from PyPI, in the ``dev`` extra), run as a subprocess on a free
port; its access log (one line per connection, written when the connection ends) shows
what went through it. Going direct is proven by a proxy that does not exist: a
connection that works with the variables pointing at a dead port did not use them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.client import (
    BaseClient,
    ConnectionOptions,
    ConnectionState,
    JobsClient,
    TokenProvider,
)
from spooled_integrations.client.proxy import ProxyError, proxy_for
from spooled_integrations.errors import SpooledConnectionError
from spooled_integrations.protocol import Event
from spooled_integrations.testing import Collector, Emulator
from spooled_integrations.testing.pytest_plugin import FAST_INTERVALS

from ..conftest import fast_options, wait_until
from .conftest import ClientFactory

PROXY_USER = "fleet"
PROXY_PASSWORD = "Pr0xyPassw0rdSecret"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProxyServer:
    """proxy.py in a subprocess on 127.0.0.1, optionally with Basic auth."""

    def __init__(self, directory: Path, *, auth: bool = False, port: int = 0) -> None:
        self.log_file = directory / f"proxy-{time.monotonic_ns()}.log"
        port_file = directory / f"proxy-{time.monotonic_ns()}.port"
        command = [
            sys.executable,
            "-m",
            "proxy",
            *("--hostname", "127.0.0.1", "--port", str(port), "--port-file", str(port_file)),
            *("--num-acceptors", "1", "--threaded", "--log-level", "INFO"),
            *("--log-file", str(self.log_file)),
        ]
        if auth:
            command += ["--basic-auth", f"{PROXY_USER}:{PROXY_PASSWORD}"]
        env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARIABLES}
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._port_file = port_file
        if not wait_until(self._answers, 30):
            self.stop()
            raise RuntimeError(f"proxy.py did not start: {self.log()}")
        self.port = int(port_file.read_text())
        credentials = f"{PROXY_USER}:{PROXY_PASSWORD}@" if auth else ""
        self.url = f"http://{credentials}127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            port = int(self._port_file.read_text())
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except (OSError, ValueError):
            return False

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def saw(self, line: str, times: int = 1, timeout: float = 10.0) -> bool:
        """Whether the access log shows ``line`` (``CONNECT host:port``, ``GET
        host:port/path``) ``times`` times or more: a line is written as a connection ends."""
        return wait_until(lambda: self.log().count(line) >= times, timeout)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class TLSFront:
    """TLS on a port of its own, every byte passed on to the emulator: an https:// and
    wss:// Spooled to reach through the proxy's tunnel."""

    def __init__(self, backend_port: int, context: ssl.SSLContext) -> None:
        self._backend_port = backend_port
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()
        self.base_url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(None)
            tls = self._context.wrap_socket(conn, server_side=True)
            with tls, socket.create_connection(("127.0.0.1", self._backend_port)) as backend:
                pump = threading.Thread(target=_pump, args=(backend, tls), daemon=True)
                pump.start()
                _pump(tls, backend)
                pump.join(5)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads[:1]:
            thread.join()
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy")


@pytest.fixture(scope="module")
def open_proxy(proxy_dir: Path) -> Iterator[ProxyServer]:
    server = ProxyServer(proxy_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_proxy(proxy_dir: Path) -> Iterator[ProxyServer]:
    server = ProxyServer(proxy_dir, auth=True)
    yield server
    server.stop()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(**FAST_INTERVALS) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variables it means (lowercase ones would win otherwise)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def dead_proxy() -> str:
    """A proxy URL nobody listens on: whatever uses it fails."""
    return f"http://127.0.0.1:{free_port()}"


def target(emu: Emulator) -> str:
    return f"127.0.0.1:{emu.port}"


def receive_one(client: BaseClient, emu: Emulator, transport: str, *, keep: bool = False) -> None:
    """Connect, see one published event arrive, and disconnect (unless ``keep``): the
    proxy logs a tunnel when it closes."""
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    client.connect()
    assert emu.wait_for_connections(1, transport=transport)  # type: ignore[arg-type]
    emu.publish("job.completed", job_id="via-proxy", queue_name="emails")
    assert seen.wait_for(
        lambda events: any(e.data.get("job_id") == "via-proxy" for e in events), timeout=10
    )
    if not keep:
        client.disconnect()


def look_up_job(emu: Emulator, **overrides: Any) -> None:
    """Log in (a fresh login) and read one job over REST."""
    options = fast_options(emu, token_cache="off", **overrides)
    job_id = emu.create_job("emails")
    with JobsClient(options, TokenProvider(options)) as jobs:
        found = jobs.get_job(job_id)
    assert found is not None and found["id"] == job_id


# -- through the proxy ----------------------------------------------------------------------


def test_streams_login_and_rest_go_through_the_proxy_of_the_environment(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    open_proxy: ProxyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", open_proxy.url)  # the emulator is http:// and ws://
    client = make_client(emu, transport, token_cache="off")
    receive_one(client, emu, transport)
    # the login is forwarded (plain http); the stream is a CONNECT tunnel
    assert open_proxy.saw(f"POST {target(emu)}/api/v1/auth/login"), open_proxy.log()
    assert open_proxy.saw(f"CONNECT {target(emu)}"), open_proxy.log()
    look_up_job(emu)
    assert open_proxy.saw(f"GET {target(emu)}/api/v1/jobs/"), open_proxy.log()


def test_lowercase_variables_win(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    open_proxy: ProxyServer,
    dead_proxy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("http_proxy", open_proxy.url)
    receive_one(make_client(emu, transport), emu, transport)
    assert open_proxy.saw(f"CONNECT {target(emu)}")


def test_the_proxy_setting_wins_over_the_environment(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    open_proxy: ProxyServer,
    dead_proxy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("ALL_PROXY", dead_proxy)
    receive_one(make_client(emu, transport, proxy=open_proxy.url), emu, transport)
    look_up_job(emu, proxy=open_proxy.url)
    assert open_proxy.saw(f"GET {target(emu)}/api/v1/jobs/")


def test_the_stream_drops_when_the_proxy_stops(
    make_client: ClientFactory, emu: Emulator, transport: str, proxy_dir: Path
) -> None:
    """Proof that the bytes flow through the proxy, not beside it."""
    server = ProxyServer(proxy_dir)
    try:
        client = make_client(emu, transport, proxy=server.url)
        receive_one(client, emu, transport, keep=True)
    finally:
        server.stop()
    assert wait_until(lambda: client.state != ConnectionState.CONNECTED, 10)
    assert wait_until(lambda: "could not reach the proxy" in str(client.stats.last_error), 10)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, trusted through ``SSL_CERT_FILE``."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_and_wss_go_through_a_tunnel_with_tls_inside(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    open_proxy: ProxyServer,
    tls_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The production shape: HTTPS_PROXY, an https:// server, its certificate checked
    (trusted here through SSL_CERT_FILE, as a corporate CA would be)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    front = TLSFront(emu.port, context)
    try:
        monkeypatch.setenv("HTTPS_PROXY", open_proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
        host = front.base_url.removeprefix("https://")
        client = make_client(emu, transport, base_url=front.base_url, token_cache="off")
        receive_one(client, emu, transport)
        look_up_job(emu, base_url=front.base_url)
        # login, stream, login, lookup: each a tunnel; the proxy saw no request in the clear
        assert open_proxy.saw(f"CONNECT {host}", times=4), open_proxy.log()
        assert f"{host}/api/" not in open_proxy.log()
        # and the certificate is checked inside the tunnel: untrusted, it is refused
        monkeypatch.delenv("SSL_CERT_FILE")
        untrusting = make_client(
            emu, transport, base_url=front.base_url, api_key=None, token=emu.make_token()
        )
        with pytest.raises(SpooledConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.connect()
        with pytest.raises(SpooledConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            look_up_job(emu, base_url=front.base_url)
    finally:
        front.close()


# -- going direct ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "no_proxy",
    ["127.0.0.1", "localhost, 127.0.0.1", "{port}", "127.0.0.0/8", "*"],
)
def test_no_proxy_sends_the_host_direct(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    dead_proxy: str,
    no_proxy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("NO_PROXY", no_proxy.replace("{port}", target(emu)))
    receive_one(make_client(emu, transport, token_cache="off"), emu, transport)
    look_up_job(emu)


def test_no_proxy_for_another_port_or_host_keeps_the_proxy(
    emu: Emulator, dead_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    for no_proxy in (f"127.0.0.1:{emu.port + 1}", "example.com", "10.0.0.0/8"):
        monkeypatch.setenv("NO_PROXY", no_proxy)
        with pytest.raises(SpooledConnectionError, match="could not reach the proxy"):
            look_up_job(emu)


def test_no_proxy_matching_is_curls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("no_proxy", ".internal.example, api.other:8443,10.0.0.0/8")
    direct = [
        "https://a.internal.example",
        "https://internal.example",
        "wss://deep.a.internal.example/ws",
        "https://api.other:8443",
        "https://10.1.2.3",
    ]
    proxied = ["https://api.spooled.cloud", "https://api.other", "https://xinternal.example"]
    assert [proxy_for(url, None) for url in direct] == [None] * len(direct)
    for url in proxied:
        proxy = proxy_for(url, None)
        assert proxy is not None and (proxy.host, proxy.port) == ("proxy.corp", 3128), url
    assert proxy_for("http://plain.example", None) is None  # no HTTP_PROXY: http goes direct
    monkeypatch.setenv("ALL_PROXY", "http://all.corp:8080")
    proxy = proxy_for("ws://plain.example", None)
    assert proxy is not None and (proxy.host, proxy.source) == ("all.corp", "ALL_PROXY")
    assert proxy_for("https://api.spooled.cloud", "off") is None


def test_off_ignores_the_environment(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    dead_proxy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    receive_one(make_client(emu, transport, proxy="off", token_cache="off"), emu, transport)
    look_up_job(emu, proxy="off")
    look_up_job(emu, proxy="")


# -- credentials and failures -----------------------------------------------------------


def _no_password(*texts: str) -> None:
    for text in texts:
        assert PROXY_PASSWORD not in text
        assert PROXY_PASSWORD[3:12] not in text


def test_a_proxy_with_basic_auth_works_and_its_password_never_shows(
    make_client: ClientFactory,
    make_runtime: Callable[..., Any],
    emu: Emulator,
    transport: str,
    auth_proxy: ProxyServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receive_one(make_client(emu, transport, proxy=auth_proxy.url), emu, transport)
    look_up_job(emu, proxy=auth_proxy.url)
    assert auth_proxy.saw(f"CONNECT {target(emu)}")
    assert auth_proxy.saw(f"GET {target(emu)}/api/v1/jobs/")
    runtime = make_runtime(emu, connection={"proxy": auth_proxy.url}, transport=transport)
    runtime.start()
    assert wait_until(lambda: runtime.status()["state"] == "connected", 10)
    options = fast_options(emu, proxy=auth_proxy.url)
    assert "[redacted]" in repr(options)
    _no_password(caplog.text, repr(options), str(runtime.status()), repr(runtime.config))
    _no_password(repr(proxy_for(emu.base_url, auth_proxy.url)))


def test_a_wrong_proxy_password_is_a_clear_error_and_the_listener_keeps_trying(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    auth_proxy: ProxyServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = auth_proxy.url.replace(PROXY_PASSWORD, PROXY_PASSWORD[::-1])
    secret = PROXY_PASSWORD[::-1]
    client = make_client(emu, transport, proxy=wrong, api_key=None, token=emu.make_token())
    client.start()
    assert wait_until(lambda: client.stats.last_error is not None, 10)
    first = str(client.stats.last_error)
    assert "HTTP 407" in first and f"http://{PROXY_USER}:[redacted]@127.0.0.1" in first
    assert "check the user and password" in first
    failures = caplog.text.count("HTTP 407")
    assert wait_until(lambda: caplog.text.count("HTTP 407") > failures, 10)  # still trying
    assert client.state == ConnectionState.RECONNECTING
    with pytest.raises(ProxyError, match="HTTP 407") as info:
        look_up_job(emu, proxy=wrong)
    for text in (caplog.text, first, str(info.value)):
        assert secret not in text and PROXY_PASSWORD not in text


def test_an_unreachable_proxy_is_named_and_retried_until_it_is_back(
    make_client: ClientFactory,
    emu: Emulator,
    transport: str,
    proxy_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}"
    client = make_client(emu, transport, proxy=url, api_key=None, token=emu.make_token())
    client.start()
    named = (
        f"could not reach the proxy http://{PROXY_USER}:[redacted]@127.0.0.1:{port} (from proxy)"
    )
    assert wait_until(lambda: named in str(client.stats.last_error), 10), client.stats.last_error
    with pytest.raises(SpooledConnectionError, match=re.escape(named)) as info:
        look_up_job(emu, proxy=url)  # the login says it the same way
    server = ProxyServer(proxy_dir, auth=True, port=port)
    try:
        assert wait_until(lambda: client.state == ConnectionState.CONNECTED, 15)
    finally:
        client.disconnect()
        server.stop()
    assert server.saw(f"CONNECT {target(emu)}")
    _no_password(caplog.text, str(client.stats.last_error), str(info.value))


def test_a_bad_proxy_variable_names_the_variable(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:1080")
    with pytest.raises(ProxyError, match="ALL_PROXY must be 'off' or an http:// proxy") as info:
        look_up_job(emu)
    assert "[redacted]" in str(info.value)
    _no_password(str(info.value))


@pytest.mark.parametrize(
    "value",
    [f"socks5://u:{PROXY_PASSWORD}@h:1080", "http://", "http://h:notaport", "http://h:3128/path"],
)
def test_a_bad_proxy_setting_is_refused_without_its_password(value: str) -> None:
    with pytest.raises(ValueError, match=r"proxy\n.*must be 'off' or an http:// proxy") as info:
        ConnectionOptions(proxy=value)
    _no_password(str(info.value))
