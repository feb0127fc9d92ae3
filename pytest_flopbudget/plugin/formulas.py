"""Formulas per test, not per process: the ``flop_formulas`` ini key and the registry restore.

``register_formula`` writes a process-wide registry, so a formula registered inside one test would
change the counts of every later test in that process, and under pytest-xdist the numbers would
depend on which worker ran what. The plugin therefore:

- imports the modules named by the ``flop_formulas`` ini key (``flop_formulas = mypkg.flop_formulas``)
  once per session in every process that runs tests (each xdist worker included), before any test:
  the module registers its formulas with ``register_formula`` when imported, or lists them in a
  ``FLOP_FORMULAS = {op: formula}`` dict, which is registered on every session start;
- after every test, puts the registry's user formulas back to what they were after that import,
  so a formula registered in a test lasts for that test only;
- when the session ends, puts back what was there before it.

Nothing here imports torch unless ``flop_formulas`` is set or a test has already loaded the engine.
"""

from __future__ import annotations

import importlib
import sys
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
        self._session: dict[Any, Any] = dict(self._before_session)
        names = [name for name in config.getini(INI_KEY) if name]
        if names:
            self._import(names)

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
        self._session = registry.user_formulas()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        try:
            return (yield)
        finally:
            registry = _loaded_registry()
            if registry is not None:
                registry.restore_user_formulas(self._session)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        registry = _loaded_registry()
        if registry is not None:
            registry.restore_user_formulas(self._before_session)
