"""The counting engine: exact FLOPs, MACs and parameters of a PyTorch model. Knows nothing of pytest.

Nothing is imported here: the result types (``measurement``) and their text (``text``, ``names``)
are torch-free and imported by the plugin at start-up, which must not pay for torch; the rest of
the engine imports torch. The public API is re-exported by ``pytest_flopbudget`` itself.
"""
