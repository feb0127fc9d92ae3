"""``python -m pytest_flopbudget``: the ``flopbudget`` command."""

from pytest_flopbudget.cli import main

raise SystemExit(main())
