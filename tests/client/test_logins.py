"""Logins a fleet can afford: one per JWT lifetime per node (processes and restarts share
it through a file), one for the fleet through Redis, a refused key retried once for all
sharers, a login 429 retried within seconds. Real processes, a real emulator with the
backend's login limiter, real Redis."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations import AuthError, ConnectionState, WebSocketClient
from spooled_integrations.client import BaseClient, ConnectionOptions, auth
from spooled_integrations.client.backoff import BackoffPolicy
from spooled_integrations.client.token_cache import cache_key
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime
from spooled_integrations.testing import Emulator

from ..conftest import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(ping_interval=0.5, login_limit=5, login_window=60.0).start()
    yield emu
    emu.stop()


def listen(emu: Emulator, cache_home: Path, api_key: str | None = None) -> subprocess.Popen[str]:
    """``spooled-integrations listen`` as a user runs it; its node is its cache directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    env.update(
        SPOOLED_API_KEY=api_key or emu.api_key,
        SPOOLED_BASE_URL=emu.base_url,
        XDG_CACHE_HOME=str(cache_home),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "spooled_integrations", "listen"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_all(processes: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            _, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        outputs.append(err)
    return outputs


def test_the_processes_of_a_node_make_one_login(emulator: Emulator, tmp_path: Path) -> None:
    processes = [listen(emulator, tmp_path) for _ in range(6)]  # one more than the limit
    try:
        all_connected = wait_until(lambda: emulator.connections_current("ws") == 6, timeout=60)
    finally:
        outputs = stop_all(processes)
    assert all_connected, outputs
    assert emulator.login_count == 1, outputs
    assert not any("429" in err for err in outputs)
    cache = tmp_path / "spooled-integrations"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (record,) = cache.glob("jwt-*.json")
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert emulator.api_key not in record.read_text()  # the JWT only, never the key


def test_a_restart_reuses_the_jwt(emulator: Emulator, tmp_path: Path) -> None:
    for _ in range(3):
        process = listen(emulator, tmp_path)
        try:
            assert wait_until(lambda: emulator.connections_current("ws") == 1, timeout=20)
        finally:
            stop_all([process])
        assert wait_until(lambda: emulator.connections_current("ws") == 0)
    assert emulator.login_count == 1
    assert emulator.connections_accepted("ws") == 3


def test_nodes_with_coordination_share_one_login_through_redis(
    emulator: Emulator, tmp_path: Path, redis_url: str
) -> None:
    import redis

    namespace = f"logins-{uuid.uuid4().hex[:8]}"
    runtimes = []
    for node in range(3):
        options = ConnectionOptions(
            api_key=emulator.api_key,
            base_url=emulator.base_url,
            token_cache=str(tmp_path / f"node-{node}"),  # a node each
        )
        coordination = {"strategy": "lease", "redis_url": redis_url, "namespace": namespace}
        config = RuntimeConfig(connection=options, coordination=coordination)
        runtimes.append(SpooledRuntime(config))
    try:
        for runtime in runtimes:
            runtime.start()
        assert wait_until(lambda: emulator.connections_current("ws") == 3, timeout=20)
        assert emulator.login_count == 1
        store = redis.Redis.from_url(redis_url)
        key = f"spooled:{namespace}:login:{cache_key(emulator.base_url, emulator.api_key)}"
        stored = store.get(key)
        assert stored is not None and emulator.api_key.encode() not in stored
        assert 0 < store.pttl(key) <= 86_400_000  # gone when the JWT expires
        store.delete(key)
    finally:
        for runtime in runtimes:
            runtime.stop(timeout=5)


def test_a_refused_key_costs_the_fleet_one_login_per_retry(
    emulator: Emulator, tmp_path: Path, redis_url: str
) -> None:
    """A wrong key on every node must not spend the environment's login budget."""
    namespace = f"refused-{uuid.uuid4().hex[:8]}"
    emulator.revoke_api_key()
    coordination = {"strategy": "lease", "redis_url": redis_url, "namespace": namespace}
    runtimes = [
        SpooledRuntime(
            RuntimeConfig(
                connection=ConnectionOptions(
                    api_key=emulator.api_key,
                    base_url=emulator.base_url,
                    token_cache=str(tmp_path / f"node-{node}"),
                ),
                coordination=coordination,
            )
        )
        for node in range(4)
    ]
    try:
        for runtime in runtimes:
            runtime.start()
        assert wait_until(lambda: all(r.health == "refused" for r in runtimes), timeout=15)
        time.sleep(1.0)
        assert emulator.login_count == 1
    finally:
        for runtime in runtimes:
            runtime.stop(timeout=5)
        import redis

        store = redis.Redis.from_url(redis_url)
        store.delete(*store.keys(f"spooled:{namespace}:*") or [f"spooled:{namespace}:none"])


def clients(emu: Emulator, cache: Path, count: int, **overrides: Any) -> list[BaseClient]:
    options = ConnectionOptions(
        api_key=emu.api_key,
        base_url=emu.base_url,
        token_cache=str(cache),
        reconnect_delay=0.05,
        max_reconnect_delay=0.5,
        **overrides,
    )
    return [WebSocketClient(options) for _ in range(count)]


def test_a_refused_key_is_tried_once_for_the_node_and_recovers(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The real schedule starts at a minute; the same code on a shorter clock.
    monkeypatch.setattr(auth, "REFUSAL_SCHEDULE", BackoffPolicy(2.0, 4.0, jitter=0))
    caplog.set_level(logging.INFO, logger="spooled_integrations.client")
    emulator.revoke_api_key()
    node = clients(emulator, tmp_path / "node", 4)  # separate locks, as processes have
    try:
        for client in node:
            client.start()
        assert wait_until(lambda: all(c.health == "refused" for c in node), timeout=10)
        assert emulator.login_count == 1  # one login refused for the whole node
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "Check SPOOLED_API_KEY" in errors[0].getMessage()
        waiting = [r for r in caplog.records if "made once for this node" in r.getMessage()]
        assert len(waiting) >= 3  # the others say they wait, at WARNING
        assert all(c.state is ConnectionState.RECONNECTING for c in node)  # never given up
        emulator.restore_api_key()
        assert wait_until(lambda: emulator.connections_current("ws") == 4, timeout=15)
        assert wait_until(lambda: all(c.health == "connected" for c in node))
        assert emulator.login_count == 2  # the one retry, which worked and was shared
    finally:
        for client in node:
            client.disconnect()


def test_a_wrong_base_path_is_refused_with_the_url_and_what_to_check(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = ConnectionOptions(
        api_key=emulator.api_key,
        base_url=emulator.base_url + "/spooled",
        ws_url=emulator.ws_url,
        token_cache=str(tmp_path),
    )
    client = WebSocketClient(options)
    client.start()
    try:
        assert wait_until(lambda: client.health == "refused")
        message = client.stats.last_error or ""
        assert f"{emulator.base_url}/spooled/api/v1/auth/login" in message
        assert "404" in message
        (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "Check SPOOLED_BASE_URL" in error.getMessage()
        assert "next attempt in" in error.getMessage()
    finally:
        client.disconnect()


def test_connect_still_raises_a_refusal_at_once(emulator: Emulator, tmp_path: Path) -> None:
    emulator.revoke_api_key()
    first, second = clients(emulator, tmp_path, 2)
    with pytest.raises(AuthError):
        first.connect()
    with pytest.raises(AuthError):  # the node's recorded refusal: no second login
        second.connect()
    assert emulator.login_count == 1


def test_a_login_429_is_retried_within_seconds_not_a_minute(tmp_path: Path) -> None:
    emu = Emulator(login_limit=1, login_window=3.0).start()
    try:
        first, second = clients(emu, tmp_path / "a", 1)[0], clients(emu, tmp_path / "b", 1)[0]
        first.connect()
        started = time.monotonic()
        second.start()  # another node: its own cache, so it must log in itself
        assert wait_until(lambda: second.state is ConnectionState.CONNECTED, timeout=30)
        waited = time.monotonic() - started
        assert emu.login_count >= 3  # one for each node, and at least one refused 429
        # The window is 3 s; retries every few seconds catch it well before a minute.
        assert waited < 30, waited
        first.disconnect()
        second.disconnect()
    finally:
        emu.stop()


def test_the_websocket_client_keeps_a_quiet_stream_alive_with_its_own_pings(
    tmp_path: Path,
) -> None:
    emu = Emulator(ping_interval=30.0).start()  # the server would be silent for 30 s
    try:
        (client,) = clients(emu, tmp_path, 1, liveness_timeout=1.5)
        client.connect()
        time.sleep(4.0)  # well past the liveness timeout, with no event at all
        assert client.stats.reconnects == 0 and client.state is ConnectionState.CONNECTED
        pings = [c for c in emu.commands_received() if c.get("cmd") == "Ping"]
        assert len(pings) >= 4  # one every 0.5 s of silence
        client.disconnect()
    finally:
        emu.stop()


def test_a_token_cache_in_a_directory_others_can_write_is_refused(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (client,) = clients(emulator, shared, 1)
    client.connect()
    client.disconnect()
    assert not list(shared.glob("jwt-*"))
    assert "not be writable by others" in caplog.text
    assert json.dumps(client.token_provider.shared_with) == "[]"
