"""What the CLI and the plugin share above the engine: the baseline file, a session's outcome and
its reports (JSON, Markdown, HTML). Free of pytest, so that ``flopbudget merge`` and
``flopbudget --html`` reuse it; free of torch where it can be (the plugin loads in every run)."""
