"""Formulas per test, not per process: the ``flop_formulas`` ini key and where registrations hold.

``register_formula`` writes a process-wide registry, so a formula registered inside one test would
change the counts of every later test in that process, and under pytest-xdist the numbers would
depend on which worker ran what. The plugin therefore notes where each registration happened and,
before every test, sets the registry's user formulas to what that test should see:

- the modules named by the ``flop_formulas`` ini key (``flop_formulas = mypkg.flop_formulas``),
  imported once per session in every process that runs tests (each xdist worker included): the
  module registers its formulas with ``register_formula`` when imported, or lists them in a
  ``FLOP_FORMULAS = {op: formula}`` dict; these, and whatever was registered before the session
  (a root conftest.py), hold for every test;
- a conftest.py's registrations hold for the tests in its directory and below, a test module's
  top-level ones for that module's tests, whenever pytest imported them (``pytest`` or
  ``pytest tests/sub``, any order, any xdist worker);
- a module-, class-, package- or session-scoped fixture's hold for the tests that use it, while it lives;
- anything registered inside a test (or a function-scoped fixture) ends with that test;
- when the session ends, the registry is put back as it was before it.

Nothing here imports torch unless ``flop_formulas`` is set or something registers a formula.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Generator

import pytest

REGISTRY_MODULE = "pytest_flopbudget.counting.registry"
INI_KEY = "flop_formulas"


def _loaded_registry() -> Any:
    """The default registry if the engine is already loaded, else None (nothing to restore)."""
    module = sys.modules.get(REGISTRY_MODULE)
    return None if module is None else module.default_registry()


class FormulaScope:
    """Registered by the plugin in every process; its hooks keep formulas scoped."""

    def __init__(self, config: pytest.Config) -> None:
        registry = _loaded_registry()
        self._before_session = registry.user_formulas() if registry is not None else {}
        names = [name for name in config.getini(INI_KEY) if name]
        if names:
            self._import(names)
        self._global: dict[Any, Any] = {}
        self._places: list[tuple[Path, bool, dict[Any, Any]]] = []  # (path, is a directory, formulas)
        self._fixtures: dict[int, tuple[str, dict[Any, Any]]] = {}  # a live wider-scope fixture's formulas
        self._known: dict[Any, Any] = {}
        # registered before the session: a conftest.py's formula holds below it, anything else everywhere
        for op, formula in self._current().items():
            source = _defined_in(formula)
            if source is not None and source.name == "conftest.py":
                self._places.append((source.parent, True, {op: formula}))
            else:
                self._global[op] = formula
        self._known = self._current()

    def _import(self, names: list[str]) -> None:
        from pytest_flopbudget.counting.registry import default_registry

        registry = default_registry()
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception as error:
                raise pytest.UsageError(
                    f"ini option {INI_KEY}: could not import {name!r} ({type(error).__name__}: {error}); "
                    "name an importable module (add its folder to the ini option pythonpath if needed)"
                ) from None
            formulas = getattr(module, "FLOP_FORMULAS", {})
            if not isinstance(formulas, dict):
                raise pytest.UsageError(f"ini option {INI_KEY}: {name}.FLOP_FORMULAS must be a dict of op -> formula")
            for op, formula in formulas.items():
                try:
                    registry.register(op, formula)
                except Exception as error:
                    raise pytest.UsageError(
                        f"ini option {INI_KEY}: {name}.FLOP_FORMULAS[{op!r}]: {type(error).__name__}: {error}"
                    ) from None

    @staticmethod
    def _current() -> dict[Any, Any]:
        registry = _loaded_registry()
        return registry.user_formulas() if registry is not None else {}

    def _added(self) -> dict[Any, Any]:
        """What was registered since the last look (each look moves the mark)."""
        now = self._current()
        added = {op: formula for op, formula in now.items() if self._known.get(op) is not formula}
        self._known = now
        return added

    # -- collection: conftest.py files and test modules register when imported -----------------

    def pytest_plugin_registered(self, plugin: Any) -> None:
        path = getattr(plugin, "__file__", None)
        if path and os.path.basename(path) == "conftest.py":
            added = self._added()
            if added:
                self._places.append((Path(path).parent, True, added))

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, Any]:
        self._added()  # anything before belongs elsewhere (it was attributed, or is global below)
        try:
            return (yield)
        finally:
            added = self._added()
            if added and isinstance(collector, pytest.Module):
                self._places.append((Path(str(collector.path)), False, added))
            else:
                self._global.update(added)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        self._global.update(self._added())  # registered by other collection hooks: everywhere

    # -- each test sees its own formulas ---------------------------------------------------------

    def _for(self, item: pytest.Item) -> dict[Any, Any]:
        path = Path(str(item.path))
        seen = dict(self._global)
        places = [(place, is_dir, formulas) for place, is_dir, formulas in self._places
                  if (is_dir and (place == path.parent or place in path.parents)) or (not is_dir and place == path)]
        for _, _, formulas in sorted(places, key=lambda p: (len(p[0].parts), not p[1])):  # deeper wins
            seen.update(formulas)
        names = set(getattr(item, "fixturenames", ()))
        for argname, formulas in self._fixtures.values():
            if argname in names:
                seen.update(formulas)
        return seen

    def _restore(self, formulas: dict[Any, Any]) -> None:
        registry = _loaded_registry()
        if registry is not None:
            registry.restore_user_formulas(formulas)
        self._known = self._current()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        self._restore(self._for(item))
        try:
            return (yield)
        finally:
            self._restore(self._global)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, Any, Any]:
        self._added()
        try:
            return (yield)
        finally:
            added = self._added()
            if added and fixturedef.scope != "function":  # a function-scoped one ends with its test
                self._fixtures[id(fixturedef)] = (fixturedef.argname, added)

    def pytest_fixture_post_finalizer(self, fixturedef: Any, request: pytest.FixtureRequest) -> None:
        if self._fixtures.pop(id(fixturedef), None) is not None:
            self._restore(self._for(request.node) if isinstance(request.node, pytest.Item) else self._global)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        registry = _loaded_registry()
        if registry is not None:
            registry.restore_user_formulas(self._before_session)


def _defined_in(formula: Any) -> Path | None:
    """The file a formula function was written in, where it can be told."""
    code = getattr(formula, "__code__", None) or getattr(getattr(formula, "__call__", None), "__code__", None)
    return Path(code.co_filename) if code is not None else None
