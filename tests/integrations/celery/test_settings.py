"""Reading and checking the ``spooled_*`` settings, task options and publisher options.

No worker here: these are the checks a worker runs when it is built, called directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured

from spooled_integrations.celery import (
    CeleryPublisher,
    SpooledImproperlyConfigured,
    SpooledStep,
    install,
    read_settings,
)
from spooled_integrations.celery.settings import read_enabled
from spooled_integrations.errors import ConfigurationError
from spooled_integrations.protocol import Event, format_timestamp
from spooled_integrations.runtime import SpooledRuntime, Subscription

KEY = "sk_test_settings0123456789"


def make_app(namespace: str | None = None, **settings: Any) -> Celery:
    app = Celery("settings-test", broker="memory://", set_as_current=False)
    if namespace:

        class Settings:
            pass

        for key, value in settings.items():
            setattr(Settings, f"{namespace}_{key.upper()}", value)
        app.config_from_object(Settings, namespace=namespace)
    else:
        app.conf.update(settings)

    @app.task(shared=False, name="app.on_done")
    def on_done(payload: Any) -> None: ...

    return app


def problems_of(app: Celery, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SpooledImproperlyConfigured) as info:
        read_settings(app, environ=environ or {})
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, ConfigurationError)
    return info.value.problems


def test_minimal_settings() -> None:
    app = make_app(
        spooled_api_key=KEY,
        spooled_subscriptions=[{"events": "job.completed", "task": "app.on_done"}],
    )
    settings = read_settings(app, environ={})
    runtime = settings.runtime
    assert runtime.transport == "ws"
    assert runtime.connection.base_url == "https://api.spooled.cloud"
    assert runtime.connection.api_key is not None
    assert runtime.connection.api_key.get_secret_value() == KEY
    assert [s.task for s in runtime.subscriptions] == ["app.on_done"]
    assert settings.shutdown_timeout == 10.0


def test_environment_fills_in_credentials_and_urls_but_settings_win() -> None:
    env = {"SPOOLED_API_KEY": "sk_test_fromenv", "SPOOLED_BASE_URL": "http://env.example"}
    runtime = read_settings(make_app(), environ=env).runtime
    assert runtime.connection.api_key is not None
    assert runtime.connection.api_key.get_secret_value() == "sk_test_fromenv"
    assert runtime.connection.base_url == "http://env.example"

    app = make_app(spooled_base_url="http://conf.example", spooled_api_key=KEY)
    runtime = read_settings(app, environ=env).runtime
    assert runtime.connection.base_url == "http://conf.example"
    assert runtime.connection.api_key is not None
    assert runtime.connection.api_key.get_secret_value() == KEY


def test_django_namespace() -> None:
    app = make_app(
        "CELERY",
        spooled_api_key=KEY,
        spooled_transport="sse",
        spooled_reconnect_delay=0.5,
        spooled_queue_size=50,
        spooled_filter={"queue_name": "emails"},
    )
    runtime = read_settings(app, environ={}).runtime
    assert runtime.transport == "sse"
    assert runtime.connection.reconnect_delay == 0.5
    assert runtime.queue_size == 50
    assert runtime.filter is not None and runtime.filter.queue_name == "emails"


def test_every_problem_at_once_naming_each_key() -> None:
    app = make_app(
        spooled_transport="tcp",
        spooled_reconnect_delay=-1,
        spooled_shutdown_timeout="soon",
        spooled_queue_size=0,
        spooled_subscription=[],  # typo
        spooled_filter={"queue": "x"},
        spooled_subscriptions=[
            {"events": ["job.completed"], "task": "app.on_done"},
            {"name": "bad", "events": ["job.complete"], "task": "app.on_dne"},
        ],
    )
    problems = problems_of(app)
    text = "\n".join(problems)
    assert "spooled_api_key: no Spooled credentials" in text
    assert "spooled_transport: must be 'ws' or 'sse', got 'tcp'" in text
    assert "spooled_reconnect_delay:" in text
    assert "spooled_shutdown_timeout: expected a number" in text
    assert "spooled_queue_size:" in text
    assert (
        "spooled_subscription: unknown Spooled setting (did you mean 'spooled_subscriptions'?)"
        in text
    )
    assert "spooled_filter: queue: unknown field" in text
    assert "spooled_subscriptions: subscriptions[1] (name='bad').events[0]: unknown event" in text
    assert "did you mean 'job.completed'?" in text


def test_unknown_task_and_options_are_named_with_the_rule_position() -> None:
    app = make_app(
        spooled_api_key=KEY,
        spooled_subscriptions=[
            {"events": ["job.completed"], "task": "app.on_dne"},
            {"events": ["job.failed"], "task": "app.on_done", "options": {"delay": 5}},
            {"events": ["job.failed"], "actor": "x.y"},
            {"events": ["job.failed"], "task": "elsewhere.task"},
        ],
        spooled_external_tasks=["elsewhere.task"],
    )
    problems = problems_of(app)
    assert any(
        p.startswith("spooled_subscriptions: subscriptions[0].task: no task named 'app.on_dne'")
        and "did you mean 'app.on_done'?" in p
        for p in problems
    ), problems
    assert any(
        "subscriptions[1].options.delay: unknown Celery option (Celery delays with 'countdown'" in p
        for p in problems
    )
    assert any("subscriptions[2].actor:" in p for p in problems)
    assert not any("subscriptions[3]" in p for p in problems)


def test_problem_messages_never_contain_the_secret() -> None:
    app = make_app(spooled_api_key=KEY, spooled_base_url="ftp://nope", spooled_token=KEY)
    text = "\n".join(problems_of(app))
    assert "spooled_base_url" in text
    assert KEY not in text


def test_django_labels_name_the_prefixed_setting() -> None:
    app = make_app("CELERY", spooled_api_key=KEY, spooled_transport="tcp", spooled_tranport="x")
    problems = problems_of(app)
    assert "spooled_transport (CELERY_SPOOLED_TRANSPORT): must be 'ws' or 'sse'" in problems[-1]
    assert any(p.startswith("CELERY_SPOOLED_TRANPORT: unknown Spooled setting") for p in problems)


def test_subscriptions_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "subs.toml"
    path.write_text(
        '[[subscription]]\nname = "done"\nevents = ["job.completed"]\ntask = "app.on_done"\n'
    )
    app = make_app(spooled_api_key=KEY, spooled_subscriptions=str(path))
    assert [s.name for s in read_settings(app, environ={}).runtime.subscriptions] == ["done"]

    path.write_text("[[subscription]]\nevents = [")
    problems = problems_of(make_app(spooled_api_key=KEY, spooled_subscriptions=str(path)))
    assert problems[0].startswith("spooled_subscriptions:") and "invalid TOML" in problems[0]


def test_task_options_declare_subscriptions() -> None:
    app = make_app(spooled_api_key=KEY)

    @app.task(
        shared=False,
        name="app.on_failed",
        spooled_events=["JobFailed"],
        spooled_queue="emails",
        spooled_payload="data",
        spooled_options={"priority": 3},
    )
    def on_failed(payload: Any) -> None: ...

    subs = list(read_settings(app, environ={}).runtime.subscriptions)
    assert len(subs) == 1
    sub = subs[0]
    assert (sub.name, sub.task, sub.queue, sub.payload) == (
        "task:app.on_failed",
        "app.on_failed",
        "emails",
        "data",
    )
    assert sub.event_types == frozenset({"job.failed"})
    assert sub.options == {"priority": 3}


def test_bad_task_options_name_the_task_and_the_option() -> None:
    app = make_app(spooled_api_key=KEY)

    @app.task(shared=False, name="app.bad", spooled_events=["job.done"], spooled_queues="x")
    def bad(payload: Any) -> None: ...

    @app.task(shared=False, name="app.no_events", spooled_queue="x")
    def no_events(payload: Any) -> None: ...

    @app.task(
        shared=False,
        name="app.bad_option",
        spooled_events="job.failed",
        spooled_options={"prio": 1},
    )
    def bad_option(payload: Any) -> None: ...

    text = "\n".join(problems_of(app))
    assert "task 'app.bad': spooled_events[0]: unknown event 'job.done'" in text
    assert (
        "task 'app.bad': spooled_queues: unknown task option (did you mean 'spooled_queue'?)"
        in text
    )
    assert "task 'app.no_events': spooled_events: missing" in text
    assert "task 'app.bad_option': spooled_options.prio: unknown Celery option" in text


def test_duplicate_names_across_config_and_task_options() -> None:
    app = make_app(
        spooled_api_key=KEY,
        spooled_subscriptions=[{"name": "task:app.t", "events": "job.failed"}],
    )

    @app.task(shared=False, name="app.t", spooled_events="job.completed")
    def t(payload: Any) -> None: ...

    assert any("duplicate of subscriptions[0]" in p for p in problems_of(app))


def test_coordination_reaches_the_runtime_config() -> None:
    from spooled_integrations.runtime.coordination import CoordinationConfig

    app = make_app(
        spooled_api_key=KEY, spooled_coordination={"strategy": "claim", "namespace": "n"}
    )
    settings = read_settings(app, environ={})
    assert settings.coordination == CoordinationConfig(strategy="claim", namespace="n")
    assert settings.runtime.coordination == settings.coordination
    django = make_app("CELERY", spooled_api_key=KEY, spooled_coordination="lease:redis://r:6380/1")
    config = read_settings(django, environ={}).runtime.coordination
    assert config is not None and config.redis_url == "redis://r:6380/1"


def test_bad_coordination_is_named_by_key() -> None:
    app = make_app(spooled_api_key=KEY, spooled_coordination={"lease_ttl": 0, "buffer_size": "x"})
    problems = problems_of(app)
    assert problems[0].startswith("spooled_coordination: lease_ttl: Input should be greater")
    assert problems[1].startswith("spooled_coordination: buffer_size: Input should be a valid")
    django = make_app("CELERY", spooled_api_key=KEY, spooled_coordination="leader")
    assert problems_of(django)[0].startswith(
        "spooled_coordination (CELERY_SPOOLED_COORDINATION): unknown strategy 'leader'"
    )


CATCH_UP_VARIABLES = (
    "SPOOLED_CATCH_UP",
    "SPOOLED_CATCH_UP_MAX_AGE",
    "SPOOLED_CATCH_UP_POLL",
    "SPOOLED_CATCH_UP_INTERVAL",
    "SPOOLED_CATCH_UP_MAX_REQUESTS",
    "SPOOLED_CHECKPOINT",
)


@pytest.fixture
def catch_up_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without the variables these tests set themselves."""
    for name in ("SPOOLED_ENABLED", *CATCH_UP_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def booted_runtime(app: Celery) -> SpooledRuntime:
    """The runtime the bootstep builds when a worker is built (not started)."""
    install(app)
    worker = app.WorkController(
        hostname="settings@localhost", pool_cls="solo", without_mingle=True, without_gossip=True
    )
    runtime = worker.blueprint.steps[SpooledStep.name].runtime
    assert isinstance(runtime, SpooledRuntime)
    return runtime


def test_catch_up_settings_reach_the_runtime_the_bootstep_builds(
    catch_up_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    catch_up_env.setenv("SPOOLED_CHECKPOINT", "redis://:s3cret@127.0.0.1:6379/15")
    catch_up_env.setenv("SPOOLED_CATCH_UP_POLL", "off")  # the config wins
    catch_up_env.setenv("SPOOLED_CATCH_UP_MAX_REQUESTS", "50")
    app = make_app(spooled_api_key=KEY, spooled_catch_up_poll="always")
    runtime = booted_runtime(app)
    config = runtime.config
    assert (config.catch_up, config.catch_up_poll) == (True, "always")
    assert config.catch_up_max_requests == 50
    assert config.checkpoint == "redis://:s3cret@127.0.0.1:6379/15"
    status = runtime.status()["catch_up"]
    assert (status["poll"], status["polling"]) == ("always", True)
    assert (
        status["checkpoint"]
        == "redis://:[redacted]@127.0.0.1:6379/15 key spooled:checkpoint:default"
    )
    assert "s3cret" not in json.dumps(runtime.status())

    path = tmp_path / "checkpoint.json"
    django = make_app(
        "CELERY",
        spooled_api_key=KEY,
        spooled_catch_up_max_age=120,
        spooled_catch_up_interval="1.5",
        spooled_checkpoint=str(path),
    )
    config = booted_runtime(django).config
    assert (config.catch_up_max_age, config.catch_up_interval) == (120.0, 1.5)
    assert config.checkpoint == str(path)  # over SPOOLED_CHECKPOINT
    assert config.catch_up_poll == "off"  # SPOOLED_CATCH_UP_POLL: nothing set it here

    catch_up_env.setenv("SPOOLED_CATCH_UP", "no")
    assert booted_runtime(make_app(spooled_api_key=KEY)).status()["catch_up"] is None


def test_bad_catch_up_settings_are_named_with_every_other_problem() -> None:
    app = make_app(
        spooled_api_key=KEY,
        spooled_transport="tcp",
        spooled_catch_up_poll="sometimes",
        spooled_catch_up_max_age=0,
        spooled_checkpoint={"url": "redis://:s3cret@h"},
    )
    env = {
        "SPOOLED_CATCH_UP": "maybe",
        "SPOOLED_CATCH_UP_INTERVAL": "soon",
        "SPOOLED_CATCH_UP_MAX_REQUESTS": "0",
        "SPOOLED_CATCH_UP_MAX_AGE": "60",  # the config's bad value is the one reported
    }
    problems = problems_of(app, env)
    assert problems == [
        "spooled_transport: must be 'ws' or 'sse', got 'tcp'",
        "SPOOLED_CATCH_UP: expected true/false/1/0/yes/no/on/off, got 'maybe'",
        "spooled_catch_up_max_age: Input should be greater than 0, got 0",
        "spooled_catch_up_poll: Input should be 'off', 'auto' or 'always', got 'sometimes'",
        "SPOOLED_CATCH_UP_INTERVAL: Input should be a valid number, unable to parse string as "
        "a number, got 'soon'",
        "SPOOLED_CATCH_UP_MAX_REQUESTS: Input should be greater than or equal to 1, got '0'",
        "spooled_checkpoint: Input should be a valid string",
    ]
    django = make_app("CELERY", spooled_api_key=KEY, spooled_catch_up="perhaps")
    assert problems_of(django) == [
        "spooled_catch_up (CELERY_SPOOLED_CATCH_UP): expected true/false/1/0/yes/no/on/off, "
        "got 'perhaps'"
    ]


def test_a_bad_catch_up_variable_stops_the_worker_build(catch_up_env: pytest.MonkeyPatch) -> None:
    catch_up_env.setenv("SPOOLED_CATCH_UP", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SPOOLED_CATCH_UP: expected true/false"):
        booted_runtime(make_app(spooled_api_key=KEY))
    catch_up_env.delenv("SPOOLED_CATCH_UP")
    app = make_app(spooled_api_key=KEY, spooled_checkpoint="http://:s3cret@host/x")
    with pytest.raises(
        ImproperlyConfigured, match="spooled_checkpoint: must be a Redis URL"
    ) as info:
        booted_runtime(app)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("cli", "env", "setting", "installed", "expected"),
    [
        (None, {}, None, False, (False, "default (spooled_enabled is not set)")),
        (None, {}, None, True, (True, "install(app)")),
        (None, {}, False, True, (False, "spooled_enabled")),
        (None, {}, "yes", False, (True, "spooled_enabled")),
        (None, {"SPOOLED_ENABLED": "0"}, True, True, (False, "SPOOLED_ENABLED")),
        (None, {"SPOOLED_ENABLED": ""}, True, False, (True, "spooled_enabled")),
        (True, {"SPOOLED_ENABLED": "0"}, False, False, (True, "--spooled")),
        (False, {}, True, True, (False, "--no-spooled")),
    ],
)
def test_enabled_precedence(
    cli: bool | None,
    env: dict[str, str],
    setting: Any,
    installed: bool,
    expected: tuple[bool, str],
) -> None:
    app = make_app() if setting is None else make_app(spooled_enabled=setting)
    assert read_enabled(app, cli=cli, installed=installed, environ=env) == expected


@pytest.mark.parametrize(
    ("setting", "env"), [("maybe", {}), (None, {"SPOOLED_ENABLED": "perhaps"})]
)
def test_enabled_must_be_a_boolean(setting: Any, env: dict[str, str]) -> None:
    app = make_app() if setting is None else make_app(spooled_enabled=setting)
    with pytest.raises(SpooledImproperlyConfigured, match="expected"):
        read_enabled(app, cli=None, installed=False, environ=env)


def _event(age: float | None) -> Event:
    stamp = None if age is None else format_timestamp_ago(age)
    return Event(
        type="job.completed", data={"job_id": "j"}, wire_type="JobCompleted", raw_timestamp=stamp
    )


def format_timestamp_ago(seconds: float) -> str:
    from datetime import datetime, timedelta, timezone

    return format_timestamp(datetime.now(timezone.utc) - timedelta(seconds=seconds))


def test_max_age_becomes_expires_counted_from_the_event_time() -> None:
    publisher = CeleryPublisher(make_app())
    sub = Subscription(events=["job.completed"], task="app.on_done", max_age=60)
    assert publisher.send_options(sub, _event(None)) == {"ignore_result": True, "expires": 60}
    expires = publisher.send_options(sub, _event(20))["expires"]
    assert 39 < expires <= 40.5
    assert publisher.send_options(sub, _event(600))["expires"] == pytest.approx(0.001)
    explicit = Subscription(
        events=["job.completed"], task="app.on_done", max_age=60, options={"expires": 5}
    )
    assert publisher.send_options(explicit, _event(1)) == {"ignore_result": True, "expires": 5}


def test_publish_uses_send_task_with_the_payload_as_only_argument() -> None:
    app = make_app()
    calls: list[tuple[str, dict[str, Any]]] = []

    class Result:
        id = "task-id"

    def send_task(name: str, **kwargs: Any) -> Result:
        calls.append((name, kwargs))
        return Result()

    app.send_task = send_task  # type: ignore[method-assign]
    sub = Subscription(
        events=["job.completed"], task="app.on_done", options={"queue": "q", "priority": 5}
    )
    started = time.monotonic()
    assert CeleryPublisher(app).publish(sub, {"a": 1}, _event(None)) == "task-id"
    assert time.monotonic() - started < 1
    assert calls == [
        (
            "app.on_done",
            {"args": [{"a": 1}], "ignore_result": True, "queue": "q", "priority": 5},
        )
    ]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"priority": 300}, "options.priority: must be an integer between 0 and 255"),
        ({"countdown": "5"}, "options.countdown: must be a number of seconds"),
        ({"queue": ""}, "options.queue: must be a non-empty string"),
        ({"headers": []}, "options.headers: must be a mapping"),
        ({"ignore_result": 1}, "options.ignore_result: must be true or false"),
        ({"eta": "2030-01-01"}, "use 'countdown'"),
    ],
)
def test_option_checks(options: dict[str, Any], fragment: str) -> None:
    sub = Subscription(events=["job.completed"], task="app.on_done", options=options)
    problems = CeleryPublisher(make_app()).validate([sub])
    assert any(fragment in p for p in problems), problems


def test_undeclared_queue_when_missing_queues_are_not_created() -> None:
    app = make_app(task_create_missing_queues=False)
    sub = Subscription(events=["job.completed"], task="app.on_done", options={"queue": "nope"})
    assert any("'nope' is not declared" in p for p in CeleryPublisher(app).validate([sub]))


def test_import_without_celery_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['celery'] = None\n"
        "try:\n    import spooled_integrations.celery\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "spooled-integrations[celery]"' in result.stdout
