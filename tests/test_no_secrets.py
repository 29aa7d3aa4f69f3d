"""No secret in any message: every setting given a bad value while the others hold
real-looking secrets, in every form, and every output grepped for any part of a secret.

The bad values are the settings model's own table (``tests/test_settings_model.py``
``BAD``), so a new setting is covered here as soon as it has one. Forms: Celery
``spooled_*`` keys (plain and Django's ``CELERY_SPOOLED_*``), ``SPOOLED_*`` variables
read by Celery, ``SpooledMiddleware`` arguments and variables read by Dramatiq, and
``RuntimeConfig`` / ``ConnectionOptions`` built directly. Outputs: the exception's
whole traceback text (chained exceptions included: pydantic's own text would show
``input_value={...}``), its repr, every log record at DEBUG, the reprs and status of
what was built, and ``spooled-integrations check``. A secret counts as shown when any
6 characters of it in a row appear.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from dramatiq.brokers.stub import StubBroker

from spooled_integrations import settings as model
from spooled_integrations._redact import redact
from spooled_integrations.celery import install
from spooled_integrations.celery.bootstep import SpooledStep
from spooled_integrations.celery.settings import read_settings, shown_secrets
from spooled_integrations.client import ConnectionOptions
from spooled_integrations.dramatiq import SpooledMiddleware
from spooled_integrations.errors import SpooledError
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime

from .test_settings_model import BAD, BAD_PASSWORD

SETTINGS = model.SETTINGS

API_KEY = "sk_live_Q7vLm2XcR9tB4nWz8KpE3sYd"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJuby1zZWNyZXRzLXRlc3QiLCJleHAiOjQxMDI0NDQ4MDB9"
    ".Vq3xN8sLr2Tz5WcY1mPbK7dHg4JfQ9aRuE6iSo0tXnM"
)
COORDINATION_PASSWORD = "Fl33tC00rdPw4x"
CHECKPOINT_PASSWORD = "Ch3ckP01ntPw7y"
INLINE_PASSWORD = "Inl1neUrlPw2z"
HEADER_SECRET = "HdrS3cr3tV4lue9"
SECRETS = (API_KEY, JWT, COORDINATION_PASSWORD, CHECKPOINT_PASSWORD, INLINE_PASSWORD)
SECRETS += (HEADER_SECRET, BAD_PASSWORD)
WINDOW = 6


def fragments(secret: str) -> set[str]:
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


FRAGMENTS = {piece: secret for secret in SECRETS for piece in fragments(secret)}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        shown = sorted({secret for piece, secret in FRAGMENTS.items() if piece in text})
        assert not shown, f"part of {shown} shows in:\n{text}"


def test_the_check_finds_a_fragment() -> None:
    """The grep itself: a cut secret is still found (pydantic cuts long inputs)."""
    with pytest.raises(AssertionError):
        assert_no_secret(f"input_value={{'api_key': 'sk_l...{API_KEY[-9:]}'}}")
    with pytest.raises(AssertionError):
        assert_no_secret(JWT[:12] + "...")
    assert_no_secret(redact(f"{API_KEY} {JWT} redis://:{INLINE_PASSWORD}@h Bearer {JWT}"))
    assert_no_secret(redact(f'token: "{JWT[:24]} ...'))  # a JWT cut by someone's quote


# -- the others' secrets, per form -------------------------------------------------------

COORDINATION = "lease:redis://127.0.0.1:6379/15"
CHECKPOINT = "redis://127.0.0.1:6379/14"
SECRET_SETTINGS: dict[str, Any] = {
    "api_key": API_KEY,
    "token": JWT,
    "coordination": COORDINATION,
    "coordination_password": COORDINATION_PASSWORD,
    "checkpoint": CHECKPOINT,
    "checkpoint_password": CHECKPOINT_PASSWORD,
    "extra_headers": {"X-Api-Key": HEADER_SECRET, "Authorization": f"Bearer {JWT}"},
}
"""What every case holds besides the bad value: the secrets, in the forms we document."""

INLINE_SETTINGS: dict[str, Any] = {
    **SECRET_SETTINGS,
    "coordination": f"claim:redis://:{INLINE_PASSWORD}@127.0.0.1:6379/15",
    "coordination_password": None,
}
"""The same with the Redis password inside the URL (still never in our messages)."""


def others(name: str, inline: bool) -> dict[str, Any]:
    chosen = INLINE_SETTINGS if inline else SECRET_SETTINGS
    return {k: v for k, v in chosen.items() if k != name and v is not None}


def as_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


@pytest.fixture(autouse=True)
def _no_spooled_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for variable in [v for v in os.environ if v.startswith("SPOOLED_")]:
        monkeypatch.delenv(variable)
    yield


def failure_texts(exc: BaseException) -> list[str]:
    """Everything a user may see of ``exc``: its traceback (with chained causes) and repr."""
    return ["".join(traceback.format_exception(exc)), repr(exc), str(exc)]


# -- Celery ------------------------------------------------------------------------------


def celery_app(namespace: str | None, config: dict[str, Any]) -> Celery:
    app = Celery("no-secrets", broker="memory://", set_as_current=False)
    if namespace:
        source = SimpleNamespace(**{f"CELERY_{k.upper()}": v for k, v in config.items()})
        app.config_from_object(source, namespace="CELERY")
    else:
        app.conf.update(config)

    @app.task(shared=False, name="app.on_done")
    def on_done(payload: Any) -> None: ...

    install(app)
    return app


def boot_celery(app: Celery) -> SpooledStep:
    """The worker's own boot path: the step is built with the ``WorkController``."""
    return SpooledStep(SimpleNamespace(app=app, hostname="node@host", pool_cls=None))


CELERY_NAMES = sorted(s.name for s in model.for_framework("celery"))


@pytest.mark.parametrize("inline", [False, True], ids=["documented", "inline-password"])
@pytest.mark.parametrize("form", ["conf", "django", "env"])
@pytest.mark.parametrize("name", CELERY_NAMES)
def test_celery_no_secret_in_a_bad_setting_report(
    name: str,
    form: str,
    inline: bool,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = BAD[name]
    config = {SETTINGS[n].celery_key: v for n, v in others(name, inline).items()}
    label = SETTINGS[name].celery_key
    if form == "env":
        if bad.text is None:
            pytest.skip(f"no text is a bad {name}")
        for n, value in others(name, inline).items():  # the secrets in the environment too
            monkeypatch.setenv(SETTINGS[n].env, as_text(value))
        monkeypatch.setenv(SETTINGS[name].env, bad.text)
        config = {}
        label = SETTINGS[name].env
    else:
        config[label] = bad.value
    app = celery_app("CELERY" if form == "django" else None, config)
    with pytest.raises(SpooledError) as info:
        boot_celery(app)
    assert label in str(info.value), str(info.value)
    assert_no_secret(*failure_texts(info.value), caplog.text)


@pytest.mark.parametrize("namespace", [None, "CELERY"])
def test_celery_no_secret_in_what_a_good_boot_builds(
    namespace: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = {SETTINGS[n].celery_key: v for n, v in INLINE_SETTINGS.items() if v is not None}
    app = celery_app(namespace, config)
    step = boot_celery(app)
    assert step.runtime is not None and step.settings is not None
    assert INLINE_PASSWORD in step.settings.runtime.coordination.redis_url  # type: ignore[union-attr]
    assert step.settings.runtime.checkpoint == (f"redis://:{CHECKPOINT_PASSWORD}@127.0.0.1:6379/14")
    assert_no_secret(
        repr(step.settings),
        repr(step.settings.runtime),
        repr(step.runtime.config.connection),
        str(step.status()),
        caplog.text,
    )
    # the inline URL and the Authorization header are what Celery would print: warned
    warned = {
        str(record.args[0])  # type: ignore[index]
        for record in caplog.records
        if "celery inspect conf" in record.getMessage()
    }
    keys = ("spooled_coordination", "spooled_extra_headers")
    assert warned == {f"CELERY_{key.upper()}" if namespace else key for key in keys}


def test_celery_sanitiser_masks_every_documented_secret() -> None:
    """What ``inspect conf`` and ``report`` print: Celery's own ``humanize`` of the conf."""
    documented = {k: v for k, v in SECRET_SETTINGS.items() if k != "extra_headers"}
    config = {SETTINGS[n].celery_key: v for n, v in documented.items()}
    config["spooled_extra_headers"] = {"X-Api-Key": HEADER_SECRET}
    for namespace in (None, "CELERY"):
        app = celery_app(namespace, config)
        read_settings(app, environ={})
        assert shown_secrets(app) == []
        assert_no_secret(app.conf.humanize(), app.conf.humanize(with_defaults=True))


# -- Dramatiq ----------------------------------------------------------------------------

DRAMATIQ_NAMES = sorted(s.name for s in model.for_framework("dramatiq"))


def boot_dramatiq(middleware: SpooledMiddleware) -> None:
    broker = StubBroker()
    try:
        broker.add_middleware(middleware)
        broker.emit_after("process_boot")
        middleware.before_worker_boot(broker, None)
    finally:
        broker.close()


@pytest.mark.parametrize("inline", [False, True], ids=["documented", "inline-password"])
@pytest.mark.parametrize("form", ["arguments", "environment"])
@pytest.mark.parametrize("name", DRAMATIQ_NAMES)
def test_dramatiq_no_secret_in_a_bad_setting_report(
    name: str,
    form: str,
    inline: bool,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = BAD[name]
    arguments = others(name, inline)
    label = f"{name}= (argument)"
    if form == "environment":
        if bad.text is None:
            pytest.skip(f"no text is a bad {name}")
        for n, value in arguments.items():
            monkeypatch.setenv(SETTINGS[n].env, as_text(value))
        monkeypatch.setenv(SETTINGS[name].env, bad.text)
        arguments = {}
        label = f"{SETTINGS[name].env} (environment)"
    else:
        arguments[name] = bad.value
    middleware = SpooledMiddleware(**arguments)
    texts = [repr(middleware), repr(middleware.settings), *middleware.setting_problems]
    with pytest.raises(SpooledError) as info:
        boot_dramatiq(middleware)
    if name != "subscriptions":  # subscription problems are named by rule position
        assert label in str(info.value), str(info.value)
    assert_no_secret(*texts, *failure_texts(info.value), caplog.text)


# -- RuntimeConfig and ConnectionOptions built directly ----------------------------------

CONNECTION_NAMES = sorted(n for n, s in SETTINGS.items() if s.group == "connection")
RUNTIME_NAMES = sorted(n for n, s in SETTINGS.items() if s.group == "runtime")
CONFIG_NAMES = ["transport", "filter", "subscriptions", "coordination"]
"""Integration settings that are ``RuntimeConfig`` fields too."""


def connection_values(name: str) -> dict[str, Any]:
    secrets = {k: v for k, v in SECRET_SETTINGS.items() if SETTINGS[k].group == "connection"}
    return {k: v for k, v in secrets.items() if k != name}


@pytest.mark.parametrize("name", CONNECTION_NAMES)
def test_connection_options_never_show_a_secret(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    values = {**connection_values(name), name: BAD[name].value}
    with pytest.raises(ValueError) as direct:  # pydantic's ValidationError, our text
        ConnectionOptions(**values)
    with pytest.raises(SpooledError) as nested:
        RuntimeConfig(connection=values, checkpoint=f"redis://:{INLINE_PASSWORD}@h/1")
    for error in (direct.value, nested.value):
        assert name in str(error), str(error)
        assert_no_secret(*failure_texts(error), caplog.text)


@pytest.mark.parametrize("name", ["api_key", "token", "base_url", "ws_url"])
def test_from_env_never_shows_a_secret(name: str) -> None:
    environ = {"SPOOLED_API_KEY": API_KEY, "SPOOLED_TOKEN": JWT}
    environ["SPOOLED_BASE_URL"] = f"https://user:{INLINE_PASSWORD}@api.example"
    text = BAD[name].text
    environ[SETTINGS[name].env] = text if text is not None else "https://"  # an invalid URL
    if name in ("api_key", "token"):
        environ["SPOOLED_BASE_URL"] = f"api.example/?api_key={API_KEY}"  # no scheme
    with pytest.raises(SpooledError) as info:
        ConnectionOptions.from_env(environ)
    assert "invalid Spooled connection options" in str(info.value)
    assert_no_secret(*failure_texts(info.value))


@pytest.mark.parametrize("name", RUNTIME_NAMES + CONFIG_NAMES)
def test_runtime_config_never_shows_a_secret(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connection = ConnectionOptions(**connection_values(""))
    values: dict[str, Any] = {
        "connection": connection,
        "coordination": f"lease:redis://:{INLINE_PASSWORD}@127.0.0.1:6379/15",
        "checkpoint": f"redis://:{CHECKPOINT_PASSWORD}@127.0.0.1:6379/14",
    }
    values[name] = BAD[name].value
    with pytest.raises(SpooledError) as info:
        RuntimeConfig(**values)
    assert_no_secret(*failure_texts(info.value), caplog.text)
    good = RuntimeConfig(**{k: v for k, v in values.items() if k != name})
    assert_no_secret(repr(good), str(SpooledRuntime(good).status()))


# -- the command line --------------------------------------------------------------------

RULES_TOML = f"""
[[subscription]]
name = "with-secrets"
events = ["job.completed"]
task = "billing.on_done"
where = {{ api_key = "{API_KEY}", note = "Bearer {JWT}" }}
options = {{ headers = {{ Authorization = "Bearer {JWT}", "X-Token" = "{HEADER_SECRET}" }}, queue = "q" }}
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    good = tmp_path / "rules.toml"
    good.write_text(RULES_TOML)
    bad = tmp_path / "bad.toml"
    bad.write_text(RULES_TOML.replace('"job.completed"', '"job.complete"'))
    broken = tmp_path / "broken.yaml"
    broken.write_text(f'subscription:\n  - events: ["job.failed"\n    token: "{JWT}" {API_KEY}\n')
    results = [check(good), check(bad), check(broken)]
    assert [r.returncode for r in results] == [0, 1, 1], [r.stderr for r in results]
    assert "with-secrets" in results[0].stdout and "[redacted]" in results[0].stdout
    for result in results:
        assert_no_secret(result.stdout, result.stderr)


# -- a running listener: its log and status ----------------------------------------------

WRONG_KEY = "sk_live_Wr0ngK3yN0tV4lidAtA11"
FRAGMENTS.update({piece: WRONG_KEY for piece in fragments(WRONG_KEY)})


def _connected(runtime: SpooledRuntime) -> bool:
    return bool(runtime.status()["connected"])


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_running_listener_never_logs_a_secret(
    transport: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Connected, then refused: every log line (the refusal names the URL) and status.

    A URL cannot carry a password (``ConnectionOptions`` refuses it): httpx would log
    it with every request."""
    from spooled_integrations.testing import Emulator

    from .conftest import wait_until

    caplog.set_level(logging.DEBUG)
    with Emulator(api_key=API_KEY, ping_interval=0.5, keepalive_interval=0.5) as emu:
        texts = []
        for index, key in enumerate((API_KEY, WRONG_KEY)):
            options = ConnectionOptions(
                base_url=emu.base_url,
                api_key=key,
                extra_headers={"X-Api-Key": HEADER_SECRET},
                token_cache="off",
                reconnect_delay=0.05,
                max_reconnect_delay=0.2,
            )
            config = RuntimeConfig(
                connection=options, transport=transport, checkpoint=str(tmp_path / str(index))
            )
            runtime = SpooledRuntime(config)
            runtime.start()
            try:
                if key == API_KEY:
                    assert wait_until(partial(_connected, runtime), timeout=10)
                    emu.publish("job.completed", job_id="j1", queue_name="emails")
                else:
                    assert wait_until(lambda: "refused" in caplog.text.lower(), timeout=10)
                texts += [str(runtime.status()), repr(runtime.config), repr(options)]
            finally:
                runtime.stop(2)
    assert "refused" in caplog.text.lower()
    assert_no_secret(caplog.text, *texts)


@pytest.mark.parametrize("field", ["base_url", "ws_url"])
def test_a_url_with_credentials_is_refused_by_name(field: str) -> None:
    scheme = "https" if field == "base_url" else "wss"
    with pytest.raises(ValueError, match=f"{field}\n.*must not hold a user or password") as info:
        ConnectionOptions(**{field: f"{scheme}://spooled:{INLINE_PASSWORD}@api.example"})
    assert "spooled:[redacted]@api.example" in str(info.value)
    assert_no_secret(*failure_texts(info.value))


def test_coordination_config_built_directly_never_shows_its_password() -> None:
    from spooled_integrations.runtime.coordination import CoordinationConfig

    with pytest.raises(ValueError) as info:  # pydantic's ValidationError, our text
        CoordinationConfig(redis_url=f"ftp://:{INLINE_PASSWORD}@127.0.0.1/1", node_id="n")
    assert "got 'ftp://:[redacted]@127.0.0.1/1'" in str(info.value)
    assert_no_secret(*failure_texts(info.value))


def test_every_package_error_hides_a_secret_its_caller_missed() -> None:
    """The last line of defence in ``errors.py``: messages and listed problems."""
    from spooled_integrations.errors import AuthError, ProtocolError, SettingsError

    errors: list[BaseException] = [
        AuthError(f"login with {API_KEY} refused", status=401),
        ProtocolError(f"bad frame {{'token': '{JWT}'}}", reason="not_json"),
        SettingsError([f"coordination: redis://:{INLINE_PASSWORD}@h/1", f"Bearer {JWT}"]),
    ]
    for error in errors:
        assert "[redacted]" in str(error)
        assert_no_secret(*failure_texts(error), *getattr(error, "problems", []))
