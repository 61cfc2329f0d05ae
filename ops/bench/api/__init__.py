"""The order API benchmark (`python -m ops.bench.api`): svc_orders against a trivial
aiohttp ceiling, driven by wrk or by Python client processes."""
