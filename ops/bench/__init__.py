"""Benchmarks that print figures, each run as `python -m ops.bench.<name>` (README).

`harness` holds what several of them share (backing servers, service processes,
percentiles), `cpu` where the CPU went, `workload` and `journaling` the standard
workload as engine commands and as the journal svc_orders would have written.
"""
