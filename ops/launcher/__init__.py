"""`./ops/run`'s launcher (`python -m ops.launcher`): starts the embedded servers and the
three services and supervises them until Ctrl-C."""
