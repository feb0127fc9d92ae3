"""Modules imported once for the whole test session, before any pytester run.

pytester's in-process runs restore ``sys.modules`` afterwards, so a C extension first imported
inside one of them is dropped and imported again by the next, which some cannot survive: libyaml's
``yaml._yaml`` then hands out nodes its own constructor rejects. The plugin imports yaml only when a
baseline is read or written (to keep pytest's start-up cheap), so the suite imports it here.
"""

import yaml  # noqa: F401
