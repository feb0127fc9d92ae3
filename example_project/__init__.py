"""An example model repository that keeps its models inside a compute budget with pytest-flopbudget."""
