"""The reference pages in docs/ list what the code has: settings and their defaults,
environment variables, middleware arguments, subscription fields and options, event
types and aliases, counters, status keys, signals and commands.

These tests read the names from the code, so a new setting, alias or counter fails
here until it is documented.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

DOCS = Path(__file__).resolve().parents[2] / "docs"
PACKAGE = Path(__file__).resolve().parents[2] / "spooled_integrations"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row (header and separator rows included)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and line.endswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])])
    return rows


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def settings_rows() -> dict[str, list[str]]:
    """configuration.md setting rows keyed by Celery name, or by Dramatiq argument."""
    rows: dict[str, list[str]] = {}
    for cells in table_rows(page("configuration.md")):
        if len(cells) != 6 or cells[0] in ("Celery", "---"):
            continue
        celery, dramatiq = code_spans(cells[0]), code_spans(cells[3])
        key = celery[0] if celery else (dramatiq[0] if dramatiq else code_spans(cells[2])[0])
        rows[key] = cells
    return rows


def documented_default(cell: str) -> Any:
    spans = code_spans(cell)
    assert spans, f"no default in {cell!r}"
    return ast.literal_eval(spans[0])


def field_default(model: type[BaseModel], name: str) -> Any:
    value = model.model_fields[name].get_default(call_default_factory=True)
    if isinstance(value, BaseModel):  # e.g. ConnectionOptions: not a literal
        return None
    return value


# -- configuration.md ------------------------------------------------------------------


def test_every_celery_setting_is_documented_with_its_django_name() -> None:
    from spooled_integrations.celery import SETTINGS

    rows = settings_rows()
    missing = sorted(name for name in SETTINGS if name not in rows)
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    for name in SETTINGS:
        assert code_spans(rows[name][1]) == [f"CELERY_{name.upper()}"], rows[name]
    extra = sorted(k for k in rows if k.startswith("spooled_") and k not in SETTINGS)
    assert not extra, f"documented but not read by the code: {extra}"


def test_documented_defaults_match_the_code() -> None:
    from spooled_integrations.celery.settings import DEFAULT_SHUTDOWN_TIMEOUT
    from spooled_integrations.client import ConnectionOptions
    from spooled_integrations.dramatiq import DramatiqSettings
    from spooled_integrations.runtime import RuntimeConfig

    rows = settings_rows()
    checked = 0
    for key, cells in rows.items():
        name = key.removeprefix("spooled_").removesuffix("=")
        default = cells[4]
        if name in ConnectionOptions.model_fields:
            expected = field_default(ConnectionOptions, name)
        elif name in RuntimeConfig.model_fields and name not in ("subscriptions", "connection"):
            expected = field_default(RuntimeConfig, name)
        elif key == "spooled_shutdown_timeout":
            expected = DEFAULT_SHUTDOWN_TIMEOUT
        elif name in ("stop_timeout", "mode", "runtime"):
            expected = field_default(DramatiqSettings, name)
        else:
            continue
        assert documented_default(default) == expected, (key, default, expected)
        checked += 1
    assert checked >= 25


def test_every_environment_variable_is_documented() -> None:
    from spooled_integrations.dramatiq import settings as dramatiq_settings

    text = page("configuration.md")
    in_code = set()
    for path in PACKAGE.rglob("*.py"):
        in_code.update(re.findall(r"\bSPOOLED_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    in_code.update(dramatiq_settings._ALL_NAMES.values())  # settings-object attribute names
    missing = sorted(name for name in in_code if f"`{name}`" not in text)
    assert not missing, f"environment variables missing from docs/configuration.md: {missing}"


def test_every_documented_environment_variable_is_read() -> None:
    """The reverse check: a variable in the Environment column exists in the code."""
    in_code = set()
    for path in PACKAGE.rglob("*.py"):
        in_code.update(re.findall(r"\bSPOOLED_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    documented = {span for cells in settings_rows().values() for span in code_spans(cells[2])}
    unread = sorted(documented - in_code)
    assert not unread, f"documented but read nowhere: {unread}"


def test_runtime_fields_with_a_variable_are_documented_with_it() -> None:
    from spooled_integrations._settings import RUNTIME_ENV

    rows = settings_rows()
    for name, variable in RUNTIME_ENV.items():
        cells = rows[f"spooled_{name}"]
        assert cells[2] == f"`{variable}`", cells  # read by both integrations
        assert code_spans(cells[3]) == [f"{name}=", f'runtime={{"{name}": …}}'], cells


def test_documented_dramatiq_arguments_exist() -> None:
    from spooled_integrations.client import ConnectionOptions
    from spooled_integrations.dramatiq import SpooledMiddleware
    from spooled_integrations.dramatiq.settings import _RUNTIME_FIELDS

    arguments = set(inspect.signature(SpooledMiddleware.__init__).parameters)
    nested = {"connection": set(ConnectionOptions.model_fields), "runtime": _RUNTIME_FIELDS}
    for key, cells in settings_rows().items():
        name = key.removeprefix("spooled_")
        spans = code_spans(cells[3])
        for span in spans:
            if match := re.fullmatch(r"(\w+)=", span):
                assert match[1] in arguments, (key, span)
            else:
                match = re.fullmatch(r'(\w+)=\{"(\w+)": …\}', span)
                assert match and match[2] in nested[match[1]], (key, span)
        for mapping, fields in nested.items():
            if key.startswith("spooled_") and name in fields:
                assert f"{name}=" in spans or f'{mapping}={{"{name}": …}}' in spans, cells


# Values unlike the default for every variable of a runtime field both integrations read.
RUNTIME_ENV_SAMPLES: dict[str, tuple[str, Any]] = {
    "SPOOLED_CATCH_UP": ("off", False),
    "SPOOLED_CATCH_UP_MAX_AGE": ("60", 60.0),
    "SPOOLED_CATCH_UP_POLL": ("always", "always"),
    "SPOOLED_CATCH_UP_INTERVAL": ("2.5", 2.5),
    "SPOOLED_CATCH_UP_MAX_REQUESTS": ("7", 7),
    "SPOOLED_CHECKPOINT": ("/var/lib/spooled/checkpoint.json", "/var/lib/spooled/checkpoint.json"),
}


def test_documented_runtime_variables_reach_the_runtime_config() -> None:
    from celery import Celery

    from spooled_integrations.celery import read_settings
    from spooled_integrations.dramatiq import resolve_settings
    from spooled_integrations.runtime import RuntimeConfig

    documented = {
        code_spans(cells[2])[0]: key.removeprefix("spooled_")
        for key, cells in settings_rows().items()
        if key.removeprefix("spooled_") in RuntimeConfig.model_fields
        and re.fullmatch(r"`SPOOLED_\w+`", cells[2])
    }
    assert set(documented) == set(RUNTIME_ENV_SAMPLES)
    env = {variable: text for variable, (text, _) in RUNTIME_ENV_SAMPLES.items()}
    app = Celery("docs", broker="memory://", set_as_current=False)
    app.conf.update(spooled_api_key="sk_test_docs")
    celery_config = read_settings(app, environ=env).runtime
    dramatiq_runtime = resolve_settings(environ=env).runtime
    for variable, name in documented.items():
        expected = RUNTIME_ENV_SAMPLES[variable][1]
        assert expected != field_default(RuntimeConfig, name), variable
        assert getattr(celery_config, name) == expected, variable
        assert dramatiq_runtime[name] == expected, variable


def test_every_middleware_argument_is_documented() -> None:
    from spooled_integrations.dramatiq import SpooledMiddleware

    text = page("configuration.md")
    arguments = inspect.signature(SpooledMiddleware.__init__).parameters
    missing = [
        name for name in arguments if name not in ("self", "settings") and f"`{name}=" not in text
    ]
    assert not missing, f"SpooledMiddleware arguments missing from the docs: {missing}"


def test_subscription_fields_and_task_and_actor_options_are_documented() -> None:
    from spooled_integrations.celery import TASK_OPTIONS
    from spooled_integrations.dramatiq import ACTOR_OPTIONS
    from spooled_integrations.runtime import Subscription

    rows = table_rows(page("configuration.md"))
    fields = {code_spans(cells[0])[0] for cells in rows if len(cells) == 3 and code_spans(cells[0])}
    missing = sorted(set(Subscription.model_fields) - fields)
    assert not missing, f"subscription fields missing: {missing}"
    options = {
        span for cells in rows if len(cells) == 3 for span in code_spans(cells[0] + cells[1])
    }
    missing = sorted((set(TASK_OPTIONS) | ACTOR_OPTIONS) - options)
    assert not missing, f"task/actor options missing: {missing}"


def test_celery_send_task_options_are_documented() -> None:
    from spooled_integrations.celery.publisher import SEND_TASK_OPTIONS

    text = page("configuration.md")
    missing = sorted(name for name in SEND_TASK_OPTIONS if f"`{name}`" not in text)
    assert not missing, f"send_task options missing: {missing}"


# -- events.md ---------------------------------------------------------------------------


def test_every_event_type_and_spelling_is_documented() -> None:
    from spooled_integrations.protocol.vocabulary import (
        _EXTRA_ALIASES,
        EventType,
        wire_dotted_name,
        wire_variant,
    )

    text = page("events.md")
    names_section, fields_section = text.split("## Fields and transports", 1)
    names_row = {
        code_spans(cells[0])[0]: cells
        for cells in table_rows(names_section)
        if len(cells) == 4 and code_spans(cells[0])
    }
    for member in EventType:
        cells = names_row.get(member.value)
        assert cells is not None, f"{member.value} missing from the names table"
        assert f"`{member.name}`" in cells[0]
        assert code_spans(cells[1]) == [wire_variant(member)]
        assert code_spans(cells[2]) == [wire_dotted_name(member)]
        assert f"`{member.value}`" in fields_section, f"{member.value}: no fields row"
    for alias, member in _EXTRA_ALIASES.items():
        assert f"`{alias}`" in names_row[member.value][2] + names_row[member.value][3], alias


# -- operations.md ---------------------------------------------------------------------


def test_counters_status_keys_signals_and_commands_are_documented() -> None:
    from spooled_integrations.cli import _COMMANDS
    from spooled_integrations.client import ConnectionOptions
    from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime, signals
    from spooled_integrations.runtime.metrics import COUNTERS

    text = page("operations.md")
    runtime = SpooledRuntime(RuntimeConfig(connection=ConnectionOptions(api_key="sk_test_x")))
    status = runtime.status()
    names = {
        *COUNTERS,
        *status,
        *status["counters"],
        *(n for n in signals.__all__ if n not in ("SpooledSignal", "send_isolated")),
    }
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"missing from docs/operations.md: {missing}"
    for command in _COMMANDS:
        assert f"`spooled-integrations {command}" in text, command


@pytest.mark.parametrize(
    "name",
    ["configuration.md", "events.md", "delivery.md", "operations.md", "troubleshooting.md"],
)
def test_links_between_pages_resolve(name: str) -> None:
    text = page(name)
    for target, anchor in re.findall(r"\]\(([a-z_]+\.md)?#?([a-z0-9_-]*)\)", text):
        linked = page(target) if target else text
        if anchor:
            headings = {
                re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", linked, re.MULTILINE)
            }
            assert anchor in headings, f"{name}: broken link {target}#{anchor}"


def test_coordination_fields_and_defaults_are_documented() -> None:
    from spooled_integrations.runtime.coordination import CoordinationConfig

    section = page("configuration.md").split("### Coordination fields", 1)[1].split("\n### ")[0]
    rows = {
        code_spans(cells[0])[0]: cells
        for cells in table_rows(section)
        if len(cells) == 3 and code_spans(cells[0])
    }
    assert set(rows) == set(CoordinationConfig.model_fields)
    for name, cells in rows.items():
        assert documented_default(cells[1]) == field_default(CoordinationConfig, name), name
