"""How a process learns about its ``dramatiq`` run: the command line in ``sys.argv``."""

from __future__ import annotations

import sys
import types

import pytest
from dramatiq.brokers.stub import StubBroker

from spooled_integrations.dramatiq import SpooledMiddleware
from spooled_integrations.dramatiq.cli_context import cli_args, is_cli_worker
from spooled_integrations.dramatiq.fork import _find_middleware, spooled_listener


def test_a_dramatiq_command_line_is_read_with_dramatiqs_own_parser() -> None:
    args = cli_args(["app.broker", "app.tasks", "--path", ".", "-p", "2"])
    assert args is not None
    assert (args.broker, args.modules, args.processes) == ("app.broker", ["app.tasks"], 2)


@pytest.mark.parametrize(
    "argv", [[], ["-q", "-x"], ["--help"], ["app", "--version"], ["app", "--processes", "x"]]
)
def test_other_command_lines_give_none_without_printing_or_exiting(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_args(argv) is None
    assert capsys.readouterr() == ("", "")


def test_a_worker_of_the_run_is_recognised_by_its_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    broker, other = StubBroker(), StubBroker()
    module = types.ModuleType("spooled_test_broker_module")
    module.broker = broker  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(sys, "argv", ["dramatiq", f"{module.__name__}:broker", "tasks"])
    assert is_cli_worker(broker)
    assert not is_cli_worker(other)
    monkeypatch.setattr(sys, "argv", ["dramatiq", f"{module.__name__}:missing"])
    assert not is_cli_worker(broker)


def test_a_command_line_naming_an_unimported_module_imports_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["prog", "spooled_not_a_module_anywhere:broker"])
    assert not is_cli_worker(StubBroker())
    assert "spooled_not_a_module_anywhere" not in sys.modules


def test_the_fork_serves_the_middleware_that_asked_for_it() -> None:
    broker = StubBroker()
    idle = SpooledMiddleware(enabled=False)
    asking = SpooledMiddleware(enabled=True, mode="fork")
    broker.add_middleware(idle)
    broker.add_middleware(asking)
    assert asking.forks == [spooled_listener]
    assert _find_middleware(broker) is asking
    broker.close()
