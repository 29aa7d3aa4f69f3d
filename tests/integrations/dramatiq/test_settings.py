"""Settings: environment < settings source < arguments, and errors that name the culprit."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from dramatiq.brokers.stub import StubBroker

from spooled_integrations.client import ConnectionOptions
from spooled_integrations.dramatiq import (
    DramatiqSettings,
    SpooledMiddleware,
    resolve_settings,
)
from spooled_integrations.errors import ConfigurationError

MakeBroker = Callable[..., tuple[StubBroker, SpooledMiddleware]]

ENV = {
    "SPOOLED_API_KEY": "sk_env",
    "SPOOLED_BASE_URL": "http://env.example:8080",
    "SPOOLED_DRAMATIQ_MODE": "every_process",
    "SPOOLED_TRANSPORT": "sse",
    "SPOOLED_STOP_TIMEOUT": "2.5",
    "SPOOLED_ENABLED": "yes",
    "SPOOLED_SUBSCRIPTIONS": "/etc/spooled.toml",
}


def test_no_arguments_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = SpooledMiddleware().settings
    assert settings.mode == "every_process"
    assert settings.transport == "sse"
    assert settings.stop_timeout == 2.5
    assert settings.enabled is True
    assert settings.subscriptions == "/etc/spooled.toml"
    assert settings.connection.base_url == "http://env.example:8080"
    assert settings.connection.api_key is not None
    assert settings.connection.api_key.get_secret_value() == "sk_env"


def test_defaults_without_environment() -> None:
    settings = resolve_settings(environ={})
    assert (settings.enabled, settings.mode, settings.transport) == (True, "fork", "ws")
    assert settings.coordination is None
    assert not settings.connection.has_credentials()


def test_a_dotted_path_builds_it_without_arguments() -> None:
    """django-dramatiq imports the class from DRAMATIQ_BROKER["MIDDLEWARE"] and calls it."""
    path = "spooled_integrations.dramatiq.SpooledMiddleware"
    module, _, name = path.rpartition(".")
    middleware = getattr(importlib.import_module(module), name)()
    assert isinstance(middleware, SpooledMiddleware)
    assert "spooled_events" in middleware.actor_options


def test_mapping_source_with_both_spellings_over_the_environment() -> None:
    settings = resolve_settings(
        {"mode": "fork", "SPOOLED_TRANSPORT": "ws", "base_url": "http://dict.example"},
        environ=ENV,
    )
    assert settings.mode == "fork"
    assert settings.transport == "ws"
    assert settings.connection.base_url == "http://dict.example"
    # The environment still fills what the source leaves out (the API key).
    assert settings.connection.api_key is not None
    assert settings.stop_timeout == 2.5


def test_object_source_reads_spooled_attributes() -> None:
    django_like = SimpleNamespace(
        SPOOLED_DRAMATIQ_MODE="every_process",
        SPOOLED_API_KEY="sk_obj",
        SPOOLED_RUNTIME={"queue_size": 50},
        DEBUG=True,
    )
    settings = resolve_settings(django_like, environ={})
    assert settings.mode == "every_process"
    assert settings.runtime == {"queue_size": 50}
    assert settings.connection.api_key is not None


def test_explicit_arguments_win_over_everything() -> None:
    connection = ConnectionOptions(base_url="http://explicit.example", api_key="sk_arg")
    settings = resolve_settings(
        {"mode": "every_process", "stop_timeout": 9},
        environ=ENV,
        mode="fork",
        connection=connection,
    )
    assert settings.mode == "fork"
    assert settings.stop_timeout == 9
    assert settings.connection is connection


def test_explicit_connection_fields_override_a_connection_object() -> None:
    connection = ConnectionOptions(base_url="http://a.example", api_key="sk_a", reconnect_delay=3)
    settings = resolve_settings(environ={}, connection=connection, base_url="http://b.example")
    assert settings.connection.base_url == "http://b.example"
    assert settings.connection.reconnect_delay == 3


def test_settings_object_is_used_as_given() -> None:
    given = DramatiqSettings(mode="every_process", connection=ConnectionOptions())
    settings = resolve_settings(given, environ=ENV, stop_timeout=1)
    assert settings.mode == "every_process"
    assert settings.transport == "ws"  # SPOOLED_TRANSPORT not applied over an explicit object
    assert settings.stop_timeout == 1


def test_a_bad_variable_is_named() -> None:
    with pytest.raises(ConfigurationError, match="SPOOLED_DRAMATIQ_MODE \\(environment\\)"):
        resolve_settings(environ={"SPOOLED_DRAMATIQ_MODE": "frok"})
    with pytest.raises(ConfigurationError, match="SPOOLED_STOP_TIMEOUT"):
        resolve_settings(environ={"SPOOLED_STOP_TIMEOUT": "soon"})


def test_a_bad_argument_is_named(make_broker: MakeBroker) -> None:
    # the middleware reports bad settings at the worker boot, with the actors' problems
    _, middleware = make_broker(mode="sometimes")
    assert any(p.startswith("mode= (argument):") for p in middleware.setting_problems)
    assert middleware.forks == []


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"moed.*unknown Spooled Dramatiq setting \(did you mean 'mode'\?\)",
    ):
        resolve_settings({"moed": "fork"}, environ={})
    with pytest.raises(ConfigurationError, match=r"unknown runtime option.*queue_sise"):
        resolve_settings(environ={}, runtime={"queue_sise": 5})
    with pytest.raises(TypeError):
        SpooledMiddleware(moed="fork")  # type: ignore[call-arg]


def test_missing_credentials_do_not_fail_at_construction() -> None:
    """A web process imports the broker module only to send messages."""
    middleware = SpooledMiddleware()
    assert "SPOOLED_API_KEY" in middleware.settings.connection_problems()[0]


def test_errors_never_show_the_api_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(environ={"SPOOLED_API_KEY": "sk_secret_value", "SPOOLED_ENABLED": "x"})
    assert "sk_secret_value" not in str(caught.value)


def test_without_dramatiq_the_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['dramatiq'] = None\n"
        "try:\n    import spooled_integrations.dramatiq\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "spooled-integrations[dramatiq]"' in result.stdout


def test_coordination_from_the_environment_and_arguments() -> None:
    from spooled_integrations.runtime.coordination import CoordinationConfig

    settings = resolve_settings(environ={"SPOOLED_COORDINATION": "claim:redis://r:6380/1"})
    assert settings.coordination == CoordinationConfig(
        strategy="claim", redis_url="redis://r:6380/1"
    )
    settings = resolve_settings(
        environ={"SPOOLED_COORDINATION": "claim"}, coordination={"namespace": "fleet-a"}
    )
    assert settings.coordination == CoordinationConfig(namespace="fleet-a")  # argument wins


def test_bad_coordination_names_its_origin_and_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_settings(environ={"SPOOLED_COORDINATION": '{"lease_ttl": 0}'})
    assert "SPOOLED_COORDINATION (environment): " in str(info.value)
    assert "lease_ttl: Input should be greater than or equal to 0.3" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"coordination= \(argument\): .*unknown strategy"):
        resolve_settings(environ={}, coordination="leader")


def test_catch_up_settings_in_every_form_reach_the_runtime_config(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPOOLED_API_KEY", "sk_env")
    monkeypatch.setenv("SPOOLED_CHECKPOINT", "redis://:s3cret@127.0.0.1:6379/15")
    monkeypatch.setenv("SPOOLED_CATCH_UP_MAX_REQUESTS", "50")
    monkeypatch.setenv("SPOOLED_CATCH_UP_POLL", "off")  # the settings and arguments win
    django_like = SimpleNamespace(
        SPOOLED_CATCH_UP_MAX_AGE=120,
        SPOOLED_RUNTIME={"catch_up_interval": "1.5", "catch_up_poll": "auto"},
    )
    broker, middleware = make_broker(settings=django_like, catch_up_poll="always")
    runtime = middleware.build_runtime(broker)
    config = runtime.config
    assert (config.catch_up, config.catch_up_poll) == (True, "always")
    assert (config.catch_up_max_age, config.catch_up_interval) == (120.0, 1.5)
    assert config.catch_up_max_requests == 50
    assert config.checkpoint == "redis://:s3cret@127.0.0.1:6379/15"
    status = runtime.status()["catch_up"]
    assert (status["poll"], status["polling"]) == ("always", True)
    assert status["checkpoint"] == (
        "redis://:[redacted]@127.0.0.1:6379/15 key spooled:checkpoint:default"
    )
    assert "s3cret" not in json.dumps(runtime.status()) + repr(middleware)

    path = tmp_path / "checkpoint.json"
    broker, middleware = make_broker(runtime={"checkpoint": str(path), "catch_up_poll": "auto"})
    config = middleware.build_runtime(broker).config
    assert (config.checkpoint, config.catch_up_poll) == (str(path), "auto")  # over the variables
    assert resolve_settings({"SPOOLED_CATCH_UP": "off"}, environ={}).runtime == {"catch_up": False}
    given = DramatiqSettings(connection=ConnectionOptions())  # used as given: no variables
    assert resolve_settings(given, environ={"SPOOLED_CATCH_UP": "off"}).runtime == {}


def test_bad_catch_up_settings_are_named_with_every_other_problem() -> None:
    env = {"SPOOLED_CATCH_UP": "maybe", "SPOOLED_CATCH_UP_INTERVAL": "soon"}
    with pytest.raises(ConfigurationError) as info:
        resolve_settings(
            {"SPOOLED_CATCH_UP_MAX_AGE": -1},
            environ=env,
            mode="sometimes",
            catch_up_max_requests=0,
            runtime={"catch_up_poll": "never", "checkpoint": 5, "queue_size": 0},
        )
    assert str(info.value).startswith("8 problem(s) in the Spooled settings:\n  - ")
    problems = sorted(info.value.problems)  # type: ignore[attr-defined]
    assert problems == sorted(
        [
            "runtime= (argument)['catch_up_poll']: Input should be 'off', 'auto' or 'always', "
            "got 'never'",
            "runtime= (argument)['checkpoint']: Input should be a valid string, got 5",
            "runtime= (argument)['queue_size']: Input should be greater than or equal to 1, got 0",
            "SPOOLED_CATCH_UP (environment): expected true/false/1/0/yes/no/on/off, got 'maybe'",
            "settings['SPOOLED_CATCH_UP_MAX_AGE']: Input should be greater than 0, got -1",
            "SPOOLED_CATCH_UP_INTERVAL (environment): Input should be a valid number, unable to "
            "parse string as a number, got 'soon'",
            "catch_up_max_requests= (argument): Input should be greater than or equal to 1, got 0",
            "mode= (argument): Input should be 'fork' or 'every_process', got 'sometimes'",
        ]
    )


def test_a_bad_catch_up_variable_fails_at_boot(
    monkeypatch: pytest.MonkeyPatch, make_broker: MakeBroker
) -> None:
    monkeypatch.setenv("SPOOLED_CATCH_UP", "maybe")
    broker, middleware = make_broker(api_key="sk_arg")
    with pytest.raises(
        ConfigurationError, match=r"SPOOLED_CATCH_UP \(environment\): expected true"
    ):
        middleware.before_worker_boot(broker, None)


def test_a_checkpoint_password_never_shows_in_a_boot_error(make_broker: MakeBroker) -> None:
    broker, middleware = make_broker(api_key="sk_arg", checkpoint="http://:s3cret@host/x")
    with pytest.raises(
        ConfigurationError, match=r"checkpoint= \(argument\): must be a Redis URL"
    ) as info:
        middleware.before_worker_boot(broker, None)
    assert "s3cret" not in str(info.value)
