"""Modules imported once for the whole test session, before any pytester run.

pytester's in-process runs restore ``sys.modules`` afterwards, so a C extension first imported
inside one of them is dropped and imported again by the next, which some cannot survive: libyaml's
``yaml._yaml`` then hands out nodes its own constructor rejects. The plugin imports yaml only when a
baseline is read or written (to keep pytest's start-up cheap), so the suite imports it here.
"""

import yaml  # noqa: F401


def pytest_report_header(config):
    """One line where tests/zoo collects nothing for want of torchvision or timm: in the session
    header, which an xdist run prints too (its controller collects nothing, so a collection-time
    line would never show)."""
    from pathlib import Path

    zoo = Path(__file__).parent / "zoo"
    selected = [Path(str(config.rootpath), arg.split("::")[0]).resolve() for arg in config.args]
    if not any(path == zoo or path in zoo.parents or zoo in path.parents for path in selected):
        return None
    from optional_libraries import zoo_unusable

    reasons = zoo_unusable()
    if not reasons:
        return None
    return "tests/zoo not collected (it runs in CI's newest environment): " + "; ".join(reasons)
