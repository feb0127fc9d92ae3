"""Libraries some tests need and a contributor's machine may lack (torchvision, timm, diffusers):
imported once, or the reason they cannot be, shared by the zoo and the session header."""

from __future__ import annotations

import importlib
from types import ModuleType

# the zoo collects nothing without these (tests/zoo/conftest.py)
ZOO_LIBRARIES = ("torchvision", "timm")


def optional(name: str) -> tuple[ModuleType | None, str]:
    """The library, or None and why not. torchvision built for another torch raises RuntimeError
    (``operator torchvision::nms does not exist``) rather than ImportError, and timm imports
    torchvision, so any exception means "not usable here"."""
    try:
        return importlib.import_module(name), ""
    except Exception as error:  # noqa: BLE001 - see docstring
        import torch

        first_line = (str(error).splitlines() or [""])[0]
        return None, f"{name} is not usable with torch {torch.__version__}: {type(error).__name__}: {first_line}"


def zoo_unusable() -> list[str]:
    """Why the zoo cannot run here (empty where it can)."""
    return [reason for reason in (optional(name)[1] for name in ZOO_LIBRARIES) if reason]
