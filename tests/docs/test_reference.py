"""The reference pages in docs/ list what the code has: settings and their defaults,
environment variables, middleware arguments, subscription fields and options, event
types and aliases, counters, status keys, signals and commands.

These tests read the names from the code, so a new setting, alias or counter fails
here until it is documented.
"""

from __future__ import annotations

import ast
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
    """The one settings table of configuration.md, keyed by setting name."""
    section = page("configuration.md").split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for cells in table_rows(section):
        if len(cells) == 7 and cells[0] not in ("Setting", "---"):
            rows[code_spans(cells[0])[0]] = cells
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


def test_the_settings_table_is_the_model() -> None:
    from spooled_integrations.settings import SETTINGS

    rows = settings_rows()
    assert sorted(rows) == sorted(SETTINGS)
    for name, setting in SETTINGS.items():
        cells = rows[name]
        assert all(cells), cells
        assert not any(c in ("—", "-") or "only" in c.split() for c in cells[:6]), cells
        assert code_spans(cells[3]) == [setting.env], cells
        assert documented_default(cells[5]) == setting.default, (name, cells[5])
        if "celery" in setting.frameworks:
            assert code_spans(cells[1]) == [setting.celery_key], cells
            assert code_spans(cells[2]) == [setting.django_key], cells
        if "dramatiq" in setting.frameworks:
            assert code_spans(cells[4]) == [f"{name}="], cells
        if setting.frameworks != {"celery", "dramatiq"}:
            framework = next(iter(setting.frameworks)).capitalize()
            assert cells[6].startswith(f"{framework}:"), cells


def test_the_model_covers_every_field() -> None:
    from spooled_integrations.settings import check_model

    check_model()


def test_defaults_match_the_code() -> None:
    from spooled_integrations.celery.settings import DEFAULT_SHUTDOWN_TIMEOUT
    from spooled_integrations.client import ConnectionOptions
    from spooled_integrations.dramatiq import DramatiqSettings
    from spooled_integrations.runtime import RuntimeConfig
    from spooled_integrations.settings import SETTINGS

    for name, setting in SETTINGS.items():
        if setting.group == "connection":
            assert setting.default == field_default(ConnectionOptions, name), name
        elif setting.group == "runtime":
            assert setting.default == field_default(RuntimeConfig, name), name
    assert SETTINGS["shutdown_timeout"].default == DEFAULT_SHUTDOWN_TIMEOUT
    for name in ("mode", "transport", "shutdown_timeout"):
        assert field_default(DramatiqSettings, name) == SETTINGS[name].default, name


def _variables_in_code() -> set[str]:
    from spooled_integrations.celery import settings as celery_settings
    from spooled_integrations.dramatiq import settings as dramatiq_settings

    # the readers read the model's variables by name
    found = set(dramatiq_settings._BY_VARIABLE)
    found.update(s.env for s in celery_settings._MODEL.values())
    for path in PACKAGE.rglob("*.py"):
        found.update(re.findall(r"\bSPOOLED_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    return {name for name in found if not name.endswith("_")}


def test_every_environment_variable_is_documented() -> None:
    text = page("configuration.md")
    missing = sorted(name for name in _variables_in_code() if f"`{name}`" not in text)
    assert not missing, f"environment variables missing from docs/configuration.md: {missing}"


def test_every_documented_environment_variable_is_read() -> None:
    from spooled_integrations.settings import SETTINGS

    documented = {span for cells in settings_rows().values() for span in code_spans(cells[3])}
    assert documented == {s.env for s in SETTINGS.values()}
    unread = sorted(documented - _variables_in_code())
    assert not unread, f"documented but read nowhere: {unread}"


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
