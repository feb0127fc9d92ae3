"""The floors pyproject.toml declares are the versions .ci/run tests: .ci/requirements/floor.txt
pins each dependency (and each [test] extra) at exactly its declared lower bound, so the compatibility
run's "floor" environment is what a user with the oldest allowed releases gets."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def declared_floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][^,;\s]*)", requirement.replace(" ", ""))
        assert match, f"{requirement!r}: every dependency declares its floor as name>=version"
        floors[_name(match.group(1))] = match.group(2)
    return floors


def floor_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "requirements" / "floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version
    return pins


def test_every_declared_floor_is_the_version_the_floor_environment_installs() -> None:
    declared, tested = declared_floors(), floor_pins()
    assert set(declared) <= set(tested), f"not pinned in floor.txt: {sorted(set(declared) - set(tested))}"
    for name, floor in declared.items():
        # 2.6 is 2.6.0, and a post-release is the same release (fvcore publishes only 0.1.5.postYYYYMMDD)
        assert _release(tested[name]) == _release(floor), (name, floor, tested[name])


def _release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in Version(version).release]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
