"""The zoo runs where its libraries do (CI's newest environment: torchvision, timm, diffusers,
transformers). Where timm or torchvision cannot be imported, nothing here is collected, and the
session header (tests/conftest.py) says so in one line, instead of a skip line per model."""

from __future__ import annotations

from optional_libraries import zoo_unusable

# Relative to this directory: every test module of the zoo.
collect_ignore_glob = ["test_*.py"] if zoo_unusable() else []
