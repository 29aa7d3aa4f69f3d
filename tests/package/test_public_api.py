"""Each public package's ``__all__`` is exactly what it exposes, and every name resolves.

"Exposed" is read from the source: the names a package's ``__init__`` defines or
imports from ``spooled_integrations`` (including names served lazily through a module
``__getattr__``), not what it imports from elsewhere for its own use (``typing``,
``collections.abc``) and not its submodules.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import types

import pytest

PACKAGES = [
    "spooled_integrations",
    "spooled_integrations.client",
    "spooled_integrations.runtime",
    "spooled_integrations.protocol",
    "spooled_integrations.testing",
    "spooled_integrations.signals",
    "spooled_integrations.errors",
]
DUNDERS = {"__version__"}  # the dunder names an ``__all__`` may list


def _bindings(body: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """``(names bound from inside the package, names imported from outside)``."""
    inside: set[str] = set()
    outside: set[str] = set()
    for node in body:
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                more_inside, more_outside = _bindings(block)
                inside |= more_inside
                outside |= more_outside
        elif isinstance(node, ast.ImportFrom):
            own = node.level > 0 or (node.module or "").startswith("spooled_integrations")
            (inside if own else outside).update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            outside.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            inside.add(node.name)
        elif isinstance(node, ast.Assign):
            inside.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            inside.add(node.target.id)
    return inside, outside


def _exposed(module: types.ModuleType) -> set[str]:
    inside, _ = _bindings(ast.parse(inspect.getsource(module)).body)
    return {
        name
        for name in inside
        if (not name.startswith("_") or name in DUNDERS)
        and not isinstance(getattr(module, name, None), types.ModuleType)
        and name not in {"__getattr__", "__dir__"}
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_the_exposed_names(name: str) -> None:
    module = importlib.import_module(name)
    listed = list(module.__all__)
    assert len(listed) == len(set(listed)), f"{name}.__all__ lists a name twice"
    assert set(listed) == _exposed(module)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_listed_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    for attribute in module.__all__:
        assert getattr(module, attribute) is not None, f"{name}.{attribute}"
    star: dict[str, object] = {}
    exec(f"from {name} import *", star)
    assert set(module.__all__) <= set(star)


@pytest.mark.parametrize("name", PACKAGES)
def test_nothing_public_is_left_out_at_runtime(name: str) -> None:
    """A public attribute not in ``__all__`` is a submodule or a helper from elsewhere."""
    module = importlib.import_module(name)
    _, outside = _bindings(ast.parse(inspect.getsource(module)).body)
    stray = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and attribute not in module.__all__
        and attribute not in outside
        and not isinstance(value, types.ModuleType)
    }
    assert not stray, f"{name} exposes {sorted(stray)} without listing them in __all__"
