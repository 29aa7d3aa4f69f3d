"""The one settings model (``spooled_integrations.settings``), read by every framework.

Every test here is parametrized over ``SETTINGS``: a setting added to the model fails
:func:`test_every_setting_has_samples` until it has sample values here, and is then
checked in every form of every framework that reads it (Celery ``spooled_<name>``,
Django ``CELERY_SPOOLED_<NAME>``, ``SPOOLED_<NAME>``; Dramatiq arguments, mappings,
settings objects and the environment), for precedence, for problems reported all at
once, and for secrets kept out of every message.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from celery import Celery
from dramatiq.brokers.stub import StubBroker
from pydantic import SecretStr

from spooled_integrations import settings as model
from spooled_integrations.celery import SpooledImproperlyConfigured, read_settings
from spooled_integrations.celery.settings import SpooledCelerySettings, read_enabled
from spooled_integrations.client import SubscriptionFilter
from spooled_integrations.dramatiq import DramatiqSettings, SpooledMiddleware, resolve_settings
from spooled_integrations.errors import SettingsError
from spooled_integrations.runtime.coordination import CoordinationConfig
from spooled_integrations.runtime.runtime import RuntimeConfig

SETTINGS = model.SETTINGS
CELERY = sorted(s.name for s in model.for_framework("celery"))
DRAMATIQ = sorted(s.name for s in model.for_framework("dramatiq"))
CREDENTIALS = ("api_key", "token")

KEY = "sk_test_model0123456789"
"""Credentials every case gets, unless the setting under test is a credential."""


# -- sample values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A valid value of a setting: native, as text, and as the reader produces it."""

    value: Any
    text: str | None = None
    expect: Any = None

    @property
    def as_text(self) -> str:
        if self.text is not None:
            return self.text
        if isinstance(self.value, (dict, list)):
            return json.dumps(self.value)
        return str(self.value)

    @property
    def expected(self) -> Any:
        return self.value if self.expect is None else self.expect


@dataclass(frozen=True)
class Bad:
    """An invalid value: native, and as text (``None``: text cannot spell it wrong)."""

    value: Any
    text: str | None


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtb2RlbC1zZWNyZXQifQ.TW9kZWxTaWduYXR1cmU5OTk"
API_KEY = "sk_live_ModelSecretKey0123456789"
REDIS_PASSWORD = "R3disModelPassw0rd"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/15"
BAD_PASSWORD = "BadValuePassw0rd"
SECRETS = (API_KEY, REDIS_PASSWORD, BAD_PASSWORD, *JWT.split("."), JWT[10:40], JWT[-20:])

SUB_A = [{"name": "sample-a", "events": ["job.completed"]}]
SUB_B = [{"name": "sample-b", "events": ["job.failed"]}]
COORD_A = {"strategy": "claim", "namespace": "sample-a"}
COORD_B = {"strategy": "lease", "namespace": "sample-b"}

SAMPLES: dict[str, tuple[Sample, Sample]] = {
    # integration
    "enabled": (Sample(False, "off"), Sample(True, "yes")),
    "mode": (Sample("every_process"), Sample("fork")),
    "transport": (Sample("sse"), Sample("ws")),
    "filter": (
        Sample({"queue_name": "emails"}, expect=SubscriptionFilter(queue_name="emails")),
        Sample({"queue_name": "sms"}, expect=SubscriptionFilter(queue_name="sms")),
    ),
    "subscriptions": (Sample(SUB_A, expect=["sample-a"]), Sample(SUB_B, expect=["sample-b"])),
    "external_tasks": (
        Sample(
            ["elsewhere.a", "elsewhere.b"],
            "elsewhere.a, elsewhere.b",
            {"elsewhere.a", "elsewhere.b"},
        ),
        Sample(["elsewhere.c"], "elsewhere.c", {"elsewhere.c"}),
    ),
    "coordination": (
        Sample(COORD_A, expect=CoordinationConfig(**COORD_A)),
        Sample(COORD_B, expect=CoordinationConfig(**COORD_B)),
    ),
    "coordination_password": (Sample("coord-pw-a"), Sample("coord-pw-b")),
    "checkpoint_password": (Sample("ckpt-pw-a"), Sample("ckpt-pw-b")),
    "shutdown_timeout": (Sample(2.5), Sample(7.0)),
    "metrics_port": (Sample(9808), Sample(9809)),
    # connection
    "base_url": (Sample("http://a.example:8080"), Sample("https://b.example")),
    "ws_url": (Sample("wss://a.example/ws"), Sample("ws://b.example/ws")),
    "token": (Sample(JWT), Sample("eyJhbGciOiJub25lIn0.eyJzdWIiOiJiIn0.")),
    "api_key": (Sample("sk_test_sample_a"), Sample("sk_test_sample_b")),
    "auto_reconnect": (Sample(False, "false"), Sample(True, "1")),
    "max_reconnect_attempts": (Sample(7), Sample(3)),
    "reconnect_delay": (Sample(0.25), Sample(0.5)),
    "max_reconnect_delay": (Sample(12.5), Sample(20.0)),
    "healthy_after": (Sample(3.0), Sample(4.0)),
    "connect_timeout": (Sample(4.5), Sample(6.0)),
    "liveness_timeout": (Sample(20.0), Sample(40.0)),
    "token_cache": (Sample("off"), Sample("/tmp/spooled-token-cache-sample")),
    "verify_tls": (Sample(False, "no"), Sample(True, "on")),
    "proxy": (Sample("http://proxy-a.example:3128"), Sample("off")),
    "extra_headers": (Sample({"X-Sample": "a"}), Sample({"X-Sample": "b"})),
    "max_frame_bytes": (Sample(2048), Sample(4096)),
    "debug": (Sample(True, "true"), Sample(False, "0")),
    # runtime
    "queue_size": (Sample(77), Sample(88)),
    "dedupe_window": (Sample(5.0), Sample(6.0)),
    "dedupe_max_entries": (Sample(500), Sample(600)),
    "coalesce_window": (Sample(0.0), Sample(0.2)),
    "max_age": (Sample(90.0), Sample(100.0)),
    "publish_attempts": (Sample(3), Sample(2)),
    "publish_budget": (Sample(12.0), Sample(13.0)),
    "publish_backoff": (Sample(0.5), Sample(0.75)),
    "publish_backoff_max": (Sample(2.0), Sample(3.0)),
    "skip_ping": (Sample(False, "off"), Sample(True, "on")),
    "catch_up": (Sample(False, "no"), Sample(True, "yes")),
    "catch_up_max_age": (Sample(120.0), Sample(240.0)),
    "catch_up_poll": (Sample("always"), Sample("off")),
    "catch_up_interval": (Sample(1.5), Sample(2.5)),
    "catch_up_max_requests": (Sample(25), Sample(50)),
    "checkpoint": (Sample("redis://127.0.0.1:6379/15"), Sample("redis://127.0.0.1:6379/14")),
    "health_file": (Sample("/tmp/spooled-health-a.json"), Sample("/run/spooled/health.json")),
}
"""Two valid values per setting, A (never the default) and B (never A)."""

BAD: dict[str, Bad] = {
    "enabled": Bad("maybe", "maybe"),
    "mode": Bad("sometimes", "sometimes"),
    "transport": Bad("tcp", "tcp"),
    "filter": Bad({"queue": "x"}, '{"queue": "x"}'),
    "subscriptions": Bad([{"events": ["job.complete"]}], '[{"events": ["job.complete"]}]'),
    "external_tasks": Bad(5, None),
    "coordination": Bad("leader", "leader"),
    "coordination_password": Bad(5, None),
    "checkpoint_password": Bad(5, None),
    "shutdown_timeout": Bad("soon", "soon"),
    "metrics_port": Bad(70000, "http"),
    "base_url": Bad(f"ftp://user:{BAD_PASSWORD}@nope", f"ftp://user:{BAD_PASSWORD}@nope"),
    "ws_url": Bad(f"http://user:{BAD_PASSWORD}@x", f"http://user:{BAD_PASSWORD}@x"),
    "token": Bad(5, None),
    "api_key": Bad(5, None),
    "auto_reconnect": Bad("perhaps", "perhaps"),
    "max_reconnect_attempts": Bad(-1, "-1"),
    "reconnect_delay": Bad(0, "0"),
    "max_reconnect_delay": Bad("soon", "soon"),
    "healthy_after": Bad(-1, "-1"),
    "connect_timeout": Bad(0, "0"),
    "liveness_timeout": Bad(-5, "-5"),
    "token_cache": Bad(5, None),
    "verify_tls": Bad("sometimes", "sometimes"),
    "extra_headers": Bad(["x"], "{not json"),
    "proxy": Bad(f"socks5://user:{BAD_PASSWORD}@proxy:1080", f"ftp://user:{BAD_PASSWORD}@proxy"),
    "max_frame_bytes": Bad(0, "0"),
    "debug": Bad("loud", "loud"),
    "queue_size": Bad(0, "0"),
    "dedupe_window": Bad(-1, "-1"),
    "dedupe_max_entries": Bad(0, "0"),
    "coalesce_window": Bad(-1, "-1"),
    "max_age": Bad(0, "0"),
    "publish_attempts": Bad(0, "0"),
    "publish_budget": Bad(-1, "-1"),
    "publish_backoff": Bad(-1, "-1"),
    "publish_backoff_max": Bad(-1, "-1"),
    "skip_ping": Bad("maybe", "maybe"),
    "catch_up": Bad("maybe", "maybe"),
    "catch_up_max_age": Bad(0, "0"),
    "catch_up_poll": Bad("sometimes", "sometimes"),
    "catch_up_interval": Bad(0, "0"),
    "catch_up_max_requests": Bad(0, "0"),
    "checkpoint": Bad(f"http://:{BAD_PASSWORD}@host/x", f"http://:{BAD_PASSWORD}@host/x"),
    "health_file": Bad("/tmp/spooled-health/", "/tmp/spooled-health/"),
}
"""A value every reader of each setting must refuse; URLs carry a password."""


def test_every_setting_has_samples() -> None:
    model.check_model()
    assert set(SAMPLES) == set(SETTINGS), "give every setting of the model sample values"
    assert set(BAD) == set(SETTINGS), "give every setting of the model a bad value"
    for name, (a, b) in SAMPLES.items():
        assert a.value != SETTINGS[name].default, f"{name}: sample A is the default"
        assert a.value != b.value, f"{name}: samples A and B are equal"
        assert SETTINGS[name].from_text(a.as_text) is not None


def test_every_setting_has_its_names() -> None:
    for setting in SETTINGS.values():
        assert setting.env.startswith("SPOOLED_")
        assert setting.celery_key == f"spooled_{setting.name}"
        assert setting.django_key == f"CELERY_{setting.celery_key.upper()}"
        assert setting.frameworks <= {"celery", "dramatiq"} and setting.frameworks
    assert len({s.env for s in SETTINGS.values()}) == len(SETTINGS)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SPOOLED_* variable of the developer's, and deprecation warnings not yet given."""
    for name in list(os.environ):
        if name.startswith("SPOOLED_"):
            monkeypatch.delenv(name)
    for entry in model.DEPRECATED.values():
        entry.warned.clear()
    yield
    for entry in model.DEPRECATED.values():
        entry.warned.clear()


# -- Celery ----------------------------------------------------------------------------


def make_app(namespace: str | None = None, **settings: Any) -> Celery:
    """As in ``tests/integrations/celery/test_settings.py``: plain or Django-style config."""
    app = Celery("settings-model", broker="memory://", set_as_current=False)
    if namespace:
        source = SimpleNamespace(
            **{f"{namespace}_{key.upper()}": value for key, value in settings.items()}
        )
        app.config_from_object(source, namespace=namespace)
    else:
        app.conf.update(settings)

    @app.task(shared=False, name="app.on_done")
    def on_done(payload: Any) -> None: ...

    return app


PASSWORD_TARGETS = {
    "coordination_password": ("coordination", "lease:redis://127.0.0.1:6379/15"),
    "checkpoint_password": ("checkpoint", "redis://127.0.0.1:6379/15"),
}
"""A password setting, and the setting (with a URL) it completes."""


def celery_base(name: str) -> dict[str, Any]:
    base = {} if name in CREDENTIALS else {"spooled_api_key": KEY}
    if name in PASSWORD_TARGETS:
        target, url = PASSWORD_TARGETS[name]
        base[f"spooled_{target}"] = url
    return base


def _password_in(name: str, coordination: Any, checkpoint: Any) -> str | None:
    """The password that setting ``name`` put into its URL."""
    url = coordination.redis_url if name == "coordination_password" else checkpoint
    return unquote(urlsplit(url).password or "")


def celery_produced(name: str, read: SpooledCelerySettings) -> Any:
    """The value of setting ``name`` in what the Celery bootstep would use."""
    group = SETTINGS[name].group
    runtime = read.runtime
    if group == "connection":
        value = getattr(runtime.connection, name)
    elif group == "runtime":
        value = getattr(runtime, name)
    elif name == "subscriptions":
        value = [s.name for s in runtime.subscriptions]
    elif name == "external_tasks":
        value = read.publisher.external_tasks
    elif name == "coordination":
        assert read.coordination == runtime.coordination
        value = runtime.coordination
    elif name in ("shutdown_timeout", "metrics_port"):
        value = getattr(read, name)
    elif name in PASSWORD_TARGETS:
        value = _password_in(name, runtime.coordination, runtime.checkpoint)
    else:
        value = getattr(runtime, name)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def celery_read(name: str, form: str, value: Any, **others: Any) -> Any:
    """Setting ``name`` given in ``form`` (``conf``, ``django``, ``env``) as Celery reads it."""
    config = {**celery_base(name), **others}
    env: dict[str, str] = {}
    if form == "env":
        env[SETTINGS[name].env] = value
    else:
        config[SETTINGS[name].celery_key] = value
    app = make_app("CELERY" if form == "django" else None, **config)
    if name == "enabled":
        return read_enabled(app, cli=None, installed=True, environ=env)[0]
    return celery_produced(name, read_settings(app, environ=env))


def _comparable(value: Any) -> Any:
    return set(value) if isinstance(value, frozenset) else value


@pytest.mark.parametrize("form", ["conf", "django", "env"])
@pytest.mark.parametrize("name", CELERY)
def test_celery_every_setting_in_every_form_reaches_the_runtime(name: str, form: str) -> None:
    sample = SAMPLES[name][0]
    value = sample.as_text if form == "env" else sample.value
    assert _comparable(celery_read(name, form, value)) == sample.expected


@pytest.mark.parametrize("name", CELERY)
def test_celery_django_spelling_is_the_documented_key(name: str) -> None:
    sample = SAMPLES[name][0]
    app = Celery("settings-model", broker="memory://", set_as_current=False)
    base = {f"CELERY_{key.upper()}": value for key, value in celery_base(name).items()}
    source = SimpleNamespace(**base, **{SETTINGS[name].django_key: sample.value})
    app.config_from_object(source, namespace="CELERY")
    if name == "enabled":
        assert read_enabled(app, cli=None, installed=True, environ={})[0] == sample.expected
    else:
        produced = celery_produced(name, read_settings(app, environ={}))
        assert _comparable(produced) == sample.expected


@pytest.mark.parametrize("form", ["conf", "django"])
@pytest.mark.parametrize("name", CELERY)
def test_celery_precedence_config_over_environment(name: str, form: str) -> None:
    """The config beats ``SPOOLED_<NAME>``, except ``SPOOLED_ENABLED``, which overrides."""
    a, b = SAMPLES[name]
    config = {**celery_base(name), SETTINGS[name].celery_key: a.value}
    app = make_app("CELERY" if form == "django" else None, **config)
    env = {SETTINGS[name].env: b.as_text}
    if name == "enabled":
        assert read_enabled(app, cli=None, installed=True, environ=env)[0] == b.expected
        assert read_enabled(app, cli=a.value, installed=True, environ=env)[0] == a.expected
        return
    produced = celery_produced(name, read_settings(app, environ=env))
    assert _comparable(produced) == a.expected


@pytest.mark.parametrize(
    "name", [n for n in CELERY if isinstance(SAMPLES.get(n, (Sample(0),))[0].value, str)]
)
def test_celery_environment_fills_an_empty_setting(name: str) -> None:
    a = SAMPLES[name][0]
    app = make_app(**celery_base(name), **{SETTINGS[name].celery_key: ""})
    produced = celery_produced(name, read_settings(app, environ={SETTINGS[name].env: a.as_text}))
    assert _comparable(produced) == a.expected


def celery_problems(app: Celery, env: dict[str, str]) -> list[str]:
    with pytest.raises(SpooledImproperlyConfigured) as info:
        read_settings(app, environ=env)
    return info.value.problems


def _named(problems: list[str], label: str) -> bool:
    return any(p.startswith(f"{label}:") for p in problems)


READ_BY_READ_SETTINGS = [n for n in CELERY if n != "enabled"]  # enabled: read_enabled
CONNECTION_CHECKS = ("base_url", "ws_url")
"""Checked by ``ConnectionOptions`` only once every connection field is valid."""


@pytest.mark.parametrize("namespace", [None, "CELERY"])
def test_celery_every_problem_at_once(namespace: str | None) -> None:
    """Several bad values, half in the config and half in the environment: one error."""
    config: dict[str, Any] = {}
    env: dict[str, str] = {}
    labels: list[str] = []
    names = [n for n in READ_BY_READ_SETTINGS if n not in CONNECTION_CHECKS]
    for i, name in enumerate(names):
        setting, bad = SETTINGS[name], BAD[name]
        if i % 2 and bad.text is not None:
            env[setting.env] = bad.text
            labels.append(setting.env)
        else:
            config[setting.celery_key] = bad.value
            key = setting.celery_key
            labels.append(f"{key} ({setting.django_key})" if namespace else key)
    problems = celery_problems(make_app(namespace, **config), env)
    missing = [label for label in labels if not _named(problems, label)]
    assert not missing, problems
    assert len(labels) <= len(problems)


@pytest.mark.parametrize("name", CONNECTION_CHECKS)
def test_celery_url_problems_next_to_other_connection_problems(name: str) -> None:
    app = make_app(
        spooled_api_key=KEY,
        spooled_reconnect_delay=0,
        **{SETTINGS[name].celery_key: BAD[name].value},
    )
    problems = celery_problems(app, {})
    assert _named(problems, "spooled_reconnect_delay")
    assert _named(problems, f"spooled_{name}"), problems


# -- Dramatiq --------------------------------------------------------------------------

DRAMATIQ_FORMS = ["argument", "mapping", "mapping_variable", "object", "environment"]


def dramatiq_layers(name: str, form: str, value: Any) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """(settings source, arguments, environment) giving setting ``name`` in ``form``."""
    setting = SETTINGS[name]
    if form == "argument":
        return None, {name: value}, {}
    if form == "mapping":
        return {name: value}, {}, {}
    if form == "mapping_variable":
        return {setting.env: value}, {}, {}
    if form == "object":
        return SimpleNamespace(**{setting.env: value, "DEBUG": True}), {}, {}
    return None, {}, {setting.env: value}


def dramatiq_produced(name: str, middleware: SpooledMiddleware) -> Any:
    """The value of setting ``name`` in what a booting Dramatiq worker would use."""
    broker = StubBroker()
    try:
        broker.add_middleware(middleware)
        config = middleware.build_runtime(broker).config
    finally:
        broker.close()
    settings = middleware.settings
    group = SETTINGS[name].group
    if group == "connection":
        value = getattr(config.connection, name)
    elif name in ("enabled", "mode", "shutdown_timeout"):
        value = getattr(settings, name)
    elif name == "subscriptions":
        value = [s.name for s in config.subscriptions]
    elif name in PASSWORD_TARGETS:
        value = _password_in(name, config.coordination, config.checkpoint)
    else:
        value = getattr(config, name)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def dramatiq_middleware(
    monkeypatch: pytest.MonkeyPatch, source: Any, arguments: dict[str, Any], env: dict[str, str]
) -> SpooledMiddleware:
    for variable, text in env.items():
        monkeypatch.setenv(variable, text)
    return SpooledMiddleware(source, **arguments)


def dramatiq_base(name: str) -> dict[str, Any]:
    base = {} if name in CREDENTIALS else {"api_key": KEY}
    if name in PASSWORD_TARGETS:
        target, url = PASSWORD_TARGETS[name]
        base[target] = url
    return base


@pytest.mark.parametrize("form", DRAMATIQ_FORMS)
@pytest.mark.parametrize("name", DRAMATIQ)
def test_dramatiq_every_setting_in_every_form_reaches_the_runtime(
    name: str, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = SAMPLES[name][0]
    value = sample.as_text if form == "environment" else sample.value
    source, arguments, env = dramatiq_layers(name, form, value)
    middleware = dramatiq_middleware(monkeypatch, source, {**dramatiq_base(name), **arguments}, env)
    assert dramatiq_produced(name, middleware) == sample.expected


@pytest.mark.parametrize(
    ("high", "low"),
    [
        ("argument", "mapping"),
        ("argument", "object"),
        ("argument", "environment"),
        ("mapping", "environment"),
        ("mapping_variable", "environment"),
        ("object", "environment"),
    ],
)
@pytest.mark.parametrize("name", DRAMATIQ)
def test_dramatiq_precedence_arguments_then_source_then_environment(
    name: str, high: str, low: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = SAMPLES[name]
    high_source, high_arguments, _ = dramatiq_layers(name, high, a.value)
    low_value = b.as_text if low == "environment" else b.value
    low_source, _, low_env = dramatiq_layers(name, low, low_value)
    source = high_source if high_source is not None else low_source
    middleware = dramatiq_middleware(
        monkeypatch, source, {**dramatiq_base(name), **high_arguments}, low_env
    )
    assert dramatiq_produced(name, middleware) == a.expected


def _dramatiq_label(name: str, form: str) -> str:
    setting = SETTINGS[name]
    return {
        "argument": f"{name}= (argument)",
        "mapping": f"settings[{name!r}]",
        "mapping_variable": f"settings[{setting.env!r}]",
        "object": f"settings.{setting.env}",
        "environment": f"{setting.env} (environment)",
    }[form]


CHECKED_AT_CONSTRUCTION = [n for n in DRAMATIQ if n != "subscriptions"]
"""``subscriptions`` is kept as given and checked when a worker boots."""


@pytest.mark.parametrize("source_form", ["mapping", "mapping_variable", "object"])
def test_dramatiq_every_problem_at_once(source_form: str) -> None:
    forms = ["environment", source_form, "argument"]
    arguments: dict[str, Any] = {}
    env: dict[str, str] = {}
    source: dict[str, Any] = {}
    labels: list[str] = []
    names = [n for n in CHECKED_AT_CONSTRUCTION if n not in CONNECTION_CHECKS]
    for i, name in enumerate(names):
        bad = BAD[name]
        form = forms[i % 3]
        if form == "environment" and bad.text is None:
            form = "argument"
        layer_source, layer_arguments, layer_env = dramatiq_layers(
            name, form, bad.text if form == "environment" else bad.value
        )
        if isinstance(layer_source, dict):
            source.update(layer_source)
        elif layer_source is not None:
            source.update(vars(layer_source))
        arguments.update(layer_arguments)
        env.update(layer_env)
        labels.append(_dramatiq_label(name, form))
    given = SimpleNamespace(**source) if source_form == "object" else source
    with pytest.raises(SettingsError) as info:
        resolve_settings(given, environ=env, **arguments)
    problems = info.value.problems
    missing = [label for label in labels if not _named(problems, label)]
    assert not missing, problems
    assert str(info.value).startswith(f"{len(problems)} problem(s) in the Spooled settings")


@pytest.mark.parametrize("name", CONNECTION_CHECKS)
def test_dramatiq_url_problems_next_to_other_connection_problems(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        resolve_settings(environ={}, reconnect_delay=0, **{name: BAD[name].value})
    problems = info.value.problems
    assert _named(problems, "reconnect_delay= (argument)")
    assert _named(problems, f"{name}= (argument)"), problems


def test_dramatiq_bad_subscriptions_are_named_at_boot_with_the_other_problems() -> None:
    middleware = SpooledMiddleware(subscriptions=BAD["subscriptions"].value)
    broker = StubBroker()
    try:
        broker.add_middleware(middleware)
        problems = middleware.check(broker)
    finally:
        broker.close()
    assert any("no Spooled credentials" in p for p in problems)
    assert any("unknown event 'job.complete'" in p for p in problems), problems


# -- deprecated names ------------------------------------------------------------------

OLD_FORMS = {
    "argument": lambda v: (None, {"stop_timeout": v}, {}),
    "mapping": lambda v: ({"stop_timeout": v}, {}, {}),
    "mapping_variable": lambda v: ({"SPOOLED_STOP_TIMEOUT": v}, {}, {}),
    "object": lambda v: (SimpleNamespace(SPOOLED_STOP_TIMEOUT=v), {}, {}),
    "environment": lambda v: (None, {}, {"SPOOLED_STOP_TIMEOUT": str(v)}),
}


def _deprecation_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno == logging.WARNING and "deprecated" in r.getMessage()
    ]


def test_the_model_maps_stop_timeout_to_shutdown_timeout() -> None:
    old = model.DEPRECATED["stop_timeout"]
    assert (old.new, old.old_env) == ("shutdown_timeout", "SPOOLED_STOP_TIMEOUT")
    assert model.by_variable("dramatiq")["SPOOLED_STOP_TIMEOUT"] == "stop_timeout"


@pytest.mark.parametrize("form", list(OLD_FORMS))
def test_stop_timeout_still_works_with_one_warning(
    form: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    source, arguments, env = OLD_FORMS[form](3.5)
    for _ in range(2):  # once per process, however often it is read
        middleware = dramatiq_middleware(monkeypatch, source, arguments, env)
        assert middleware.settings.shutdown_timeout == 3.5
        assert middleware.settings.stop_timeout == 3.5
    warnings = _deprecation_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "shutdown_timeout" in message
    assert "stop_timeout" in message.replace("SPOOLED_STOP_TIMEOUT", "stop_timeout")


def test_stop_timeout_in_the_settings_model_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert DramatiqSettings(stop_timeout=4).shutdown_timeout == 4
    assert DramatiqSettings(stop_timeout=4, shutdown_timeout=6).shutdown_timeout == 6
    warnings = _deprecation_warnings(caplog)
    assert len(warnings) == 1 and "shutdown_timeout" in warnings[0].getMessage()


NEW_FORMS = {
    "argument": lambda old, new: (None, {"stop_timeout": old, "shutdown_timeout": new}, {}),
    "mapping (new last)": lambda old, new: (
        {"stop_timeout": old, "shutdown_timeout": new},
        {},
        {},
    ),
    "environment": lambda old, new: (
        None,
        {},
        {"SPOOLED_STOP_TIMEOUT": str(old), "SPOOLED_SHUTDOWN_TIMEOUT": str(new)},
    ),
}
BUGGY_NEW_FORMS = {
    "mapping (old last)": lambda old, new: (
        {"shutdown_timeout": new, "stop_timeout": old},
        {},
        {},
    ),
    "mapping_variable": lambda old, new: (
        {"SPOOLED_SHUTDOWN_TIMEOUT": new, "SPOOLED_STOP_TIMEOUT": old},
        {},
        {},
    ),
    "object": lambda old, new: (
        SimpleNamespace(SPOOLED_STOP_TIMEOUT=old, SPOOLED_SHUTDOWN_TIMEOUT=new),
        {},
        {},
    ),
}


def _new_name_wins(form: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    source, arguments, env = form(1.5, 6.0)
    middleware = dramatiq_middleware(monkeypatch, source, arguments, env)
    assert middleware.settings.shutdown_timeout == 6.0


@pytest.mark.parametrize("form", list(NEW_FORMS))
def test_the_new_name_wins_over_the_old_one(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _new_name_wins(NEW_FORMS[form], monkeypatch)


@pytest.mark.parametrize("form", list(BUGGY_NEW_FORMS))
def test_the_new_name_wins_over_the_old_one_in_a_settings_source(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _new_name_wins(BUGGY_NEW_FORMS[form], monkeypatch)


# -- secrets ---------------------------------------------------------------------------


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shows in {text!r}"


CELERY_SECRET_SETTINGS = {
    "api_key": API_KEY,
    "token": JWT,
    "checkpoint": REDIS_URL,
    "coordination": f"lease:{REDIS_URL}",
}


@pytest.mark.parametrize("form", ["conf", "django", "env"])
@pytest.mark.parametrize("name", CELERY)
def test_celery_no_secret_in_any_problem(
    name: str, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = BAD[name]
    if form == "env" and bad.text is None:
        pytest.skip(f"no text is a bad {name}")
    config = {SETTINGS[n].celery_key: v for n, v in CELERY_SECRET_SETTINGS.items() if n != name}
    config["spooled_subscriptions"] = SUB_A
    if name == "subscriptions":
        del config["spooled_subscriptions"]
    env: dict[str, str] = {}
    if form == "env":
        env[SETTINGS[name].env] = bad.text  # type: ignore[assignment]
    else:
        config[SETTINGS[name].celery_key] = bad.value
    app = make_app("CELERY" if form == "django" else None, **config)
    with pytest.raises(SpooledImproperlyConfigured) as info:
        if name == "enabled":
            read_enabled(app, cli=None, installed=True, environ=env)
        else:
            read_settings(app, environ=env)
    label = SETTINGS[name].env if form == "env" else SETTINGS[name].celery_key
    assert label in str(info.value)
    _assert_no_secret(str(info.value), repr(info.value), caplog.text)


DRAMATIQ_SECRET_SETTINGS = {
    "api_key": API_KEY,
    "token": JWT,
    "checkpoint": REDIS_URL,
    "coordination": f"claim:{REDIS_URL}",
}


@pytest.mark.parametrize("form", DRAMATIQ_FORMS)
@pytest.mark.parametrize("name", DRAMATIQ)
def test_dramatiq_no_secret_in_any_problem(
    name: str, form: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = BAD[name]
    if form == "environment" and bad.text is None:
        pytest.skip(f"no text is a bad {name}")
    source, arguments, env = dramatiq_layers(
        name, form, bad.text if form == "environment" else bad.value
    )
    others = {n: v for n, v in DRAMATIQ_SECRET_SETTINGS.items() if n != name}
    with pytest.raises(SettingsError) as info:
        middleware = dramatiq_middleware(monkeypatch, source, {**others, **arguments}, env)
        _assert_no_secret(repr(middleware), repr(middleware.settings.connection))
        broker = StubBroker()  # subscriptions are checked when a worker boots
        try:
            broker.add_middleware(middleware)
            middleware.build_runtime(broker)
        finally:
            broker.close()
    if name != "subscriptions":
        assert _dramatiq_label(name, form) in str(info.value)
    _assert_no_secret(str(info.value), repr(info.value), caplog.text)


def test_no_secret_in_the_repr_of_any_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {SETTINGS[n].celery_key: v for n, v in CELERY_SECRET_SETTINGS.items()}
    read = read_settings(make_app(**config), environ={})
    assert read.runtime.connection.token is not None
    assert read.runtime.checkpoint == REDIS_URL  # the worker gets the real value
    for env_var, value in (
        ("SPOOLED_API_KEY", API_KEY),
        ("SPOOLED_TOKEN", JWT),
        ("SPOOLED_CHECKPOINT", REDIS_URL),
        ("SPOOLED_COORDINATION", f"claim:{REDIS_URL}"),
    ):
        monkeypatch.setenv(env_var, value)
    middleware = SpooledMiddleware()
    broker = StubBroker()
    try:
        broker.add_middleware(middleware)
        config_d = middleware.build_runtime(broker).config
    finally:
        broker.close()
    assert config_d.checkpoint == REDIS_URL
    texts = [
        repr(middleware),
        repr(middleware.settings.connection),
        repr(middleware.settings.coordination),
        repr(config_d),
        repr(RuntimeConfig(checkpoint=REDIS_URL)),
        repr(read),  # the runtime config, the publisher and the coordination
    ]
    _assert_no_secret(*texts)


@pytest.mark.parametrize("form", ["argument", "runtime mapping", "environment"])
def test_no_checkpoint_password_in_the_repr_of_the_dramatiq_settings(form: str) -> None:
    if form == "argument":
        settings = resolve_settings(environ={}, checkpoint=REDIS_URL)
    elif form == "runtime mapping":
        settings = resolve_settings(environ={}, runtime={"checkpoint": REDIS_URL})
    else:
        settings = resolve_settings(environ={"SPOOLED_CHECKPOINT": REDIS_URL})
    _assert_no_secret(repr(settings))
