"""Eager ``flex_attention`` while counting: torch's debug switch that calls its op directly.

Eager ``flex_attention`` wraps its higher-order op in ``torch.compile(fullgraph=True)``, which
refuses to run under any non-infra dispatch mode (torch's FlopCounterMode fails the same way);
``_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG`` makes it call the op directly, the same dense computation.
The switch is set while counting and put back after. When the module is not loaded yet, importing
it (about half a second on recent torches) would tax every count; instead a finder watches for its
first import during the count and sets the switch as soon as the module has run, so code that
imports flex attention inside a counted block runs as it would outside.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

MODULE = "torch.nn.attention.flex_attention"
SWITCH = "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"


class EagerFlexAttention:
    """Context manager: the switch on for the count (now, or when the module is first imported)."""

    def __init__(self) -> None:
        self._module: ModuleType | None = None
        self._saved: Any = None
        self._watch: _FirstImport | None = None

    def __enter__(self) -> EagerFlexAttention:
        module = sys.modules.get(MODULE)
        if module is not None:
            self._switch_on(module)
        else:
            self._watch = _FirstImport(self._switch_on)
            sys.meta_path.insert(0, self._watch)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watch is not None:
            if self._watch in sys.meta_path:
                sys.meta_path.remove(self._watch)
            self._watch = None
        if self._module is not None:
            setattr(self._module, SWITCH, self._saved)
            self._module = None

    def _switch_on(self, module: ModuleType) -> None:
        if not hasattr(module, SWITCH):  # a torch without the switch (2.6 runs the op eagerly anyway)
            return
        self._module, self._saved = module, getattr(module, SWITCH)
        setattr(module, SWITCH, True)


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds flex attention's module through the other finders and calls ``loaded`` once it has run."""

    def __init__(self, loaded: Any) -> None:
        self._loaded = loaded
        self._busy = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != MODULE or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module
        loaded = self._loaded

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            loaded(module)

        loader.exec_module = exec_module  # this spec's own loader instance
        return spec
