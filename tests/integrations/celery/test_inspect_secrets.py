"""A real worker with secrets in its Celery config: ``celery inspect conf``, ``celery
report``, ``inspect stats`` / ``spooled_status`` and the worker log show none of them.

Celery masks a setting by its name (``*_key``, ``*_token``, ``*_password``... in
``celery.app.utils.HIDDEN_SETTINGS``), recursing into mappings; it never looks inside a
URL except the broker's and a result backend's. So the secrets are given the way
``docs/configuration.md`` says: ``spooled_api_key``, ``spooled_token``, the Redis
passwords in ``spooled_coordination_password`` / ``spooled_checkpoint_password``, a
header under a secret-named key. The worker really uses them (its listener connects
with the token), and a grep finds no 6 characters of any of them in any output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spooled_integrations.testing import Emulator

from ...test_no_secrets import assert_no_secret
from .conftest import CELERY, StartWorker, WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.redis]

API_KEY = "sk_live_W4nDk9QmT2xLp7VzR8cJ5bHs"
COORDINATION_PASSWORD = "Fl33tC00rdPw4x"
CHECKPOINT_PASSWORD = "Ch3ckP01ntPw7y"
HEADER_SECRET = "HdrS3cr3tV4lue9"
MODULE_CLI = (sys.executable, "-m", "spooled_integrations.celery")


@pytest.fixture
def secret_emulator() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, ping_interval=1.0, keepalive_interval=0.5) as emu:
        yield emu


def celery(worker: WorkerProcess, *args: str, cli: tuple[str, ...] = (CELERY,)) -> str:
    result = subprocess.run(
        [*cli, "-A", "spooled_testapp", *args],
        env=worker.env,
        cwd=worker.log.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("mode", ["imports", "django"])
def test_inspect_conf_and_report_mask_every_secret(
    mode: str, redis_url: str, secret_emulator: Emulator, start_worker: StartWorker
) -> None:
    token = secret_emulator.make_token()
    secrets = (API_KEY, token, COORDINATION_PASSWORD, CHECKPOINT_PASSWORD, HEADER_SECRET)
    worker = start_worker(
        redis_url,
        secret_emulator,
        mode=mode,
        spooled_token=token,
        spooled_coordination="lease:redis://127.0.0.1:6379/15",
        spooled_coordination_password=COORDINATION_PASSWORD,
        spooled_checkpoint="redis://127.0.0.1:6379/14",
        spooled_checkpoint_password=CHECKPOINT_PASSWORD,
        spooled_extra_headers={"X-Api-Key": HEADER_SECRET},
    )
    worker.wait_ready()
    # the secrets are the worker's real ones: its listener logged in with the token
    assert secret_emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()

    conf = celery(worker, "inspect", "conf", "-d", worker.node, "--json", "-t", "5")
    replies = json.loads(conf.strip().splitlines()[-1])
    shown = replies[worker.node]

    def key(name: str) -> str:  # as the config spells it
        return f"CELERY_SPOOLED_{name.upper()}" if mode == "django" else f"spooled_{name}"

    for name in ("api_key", "token", "coordination_password", "checkpoint_password"):
        assert shown[key(name)] == "********", (name, shown)
    assert shown[key("extra_headers")] == {"X-Api-Key": "********"}

    report = celery(worker, "report")
    assert "spooled_coordination_password" in report.lower() and "********" in report
    stats = celery(worker, "inspect", "stats", "-d", worker.node, "--json", "-t", "5")
    status = celery(
        worker, "inspect", "spooled_status", "-d", worker.node, "--json", "-t", "5", cli=MODULE_CLI
    )
    assert '"connected": true' in status
    texts = {"inspect conf": conf, "report": report, "inspect stats": stats, "status": status}
    texts["worker log"] = worker.output()
    for where, text in texts.items():
        for secret in secrets:
            assert secret[:12] not in text, f"{where} shows the start of a secret"
        assert_no_secret(text)
    _assert_token_hidden(token, texts)


def _assert_token_hidden(token: str, texts: dict[str, str]) -> None:
    """The emulator's JWT is not in :mod:`tests.test_no_secrets`' list: grep it here."""
    pieces = {token[i : i + 6] for i in range(len(token) - 5)}
    for where, text in texts.items():
        found = sorted(piece for piece in pieces if piece in text)
        assert not found, f"{where} shows parts of the token: {found[:5]}"


def test_a_password_inside_a_url_is_named_at_boot(
    redis_url: str, secret_emulator: Emulator, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Celery cannot mask a password inside ``spooled_coordination``: the worker says so
    at boot, naming the setting and never the value."""
    worker = start_worker(
        redis_url,
        secret_emulator,
        mode="imports",
        spooled_coordination=f"lease:redis://:{COORDINATION_PASSWORD}@127.0.0.1:6379/15",
    )
    worker.wait_ready()
    log = worker.output()
    assert "the Spooled setting spooled_coordination holds a secret" in log
    assert "spooled_coordination_password" in log
    assert COORDINATION_PASSWORD not in log
