"""svc_stream's Prometheus metrics, defined once; labels are low-cardinality only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("stream_clients", "Connected WebSocket clients")
SUBSCRIPTIONS = Gauge("stream_subscriptions", "Live feed subscriptions", ["channel"])
MESSAGES_IN = Counter("stream_messages_in_total", "Market-data messages from NATS",
                      ["channel"])
MESSAGES_OUT = Counter("stream_messages_out_total", "WebSocket frames sent to clients")
CONFLATED = Counter("stream_book_updates_conflated_total",
                    "Book updates replaced by a newer one before a client got them")
DROPPED = Counter("stream_clients_dropped_total",
                  "Clients disconnected because they fell behind (close code 1013)")
SNAPSHOT_FAILURES = Counter("stream_snapshot_failures_total",
                            "Snapshots served empty because Redis failed", ["channel"])
BAD_PAYLOADS = Counter("stream_bad_payloads_total",
                       "NATS messages dropped because they were not the expected JSON",
                       ["channel"])
CATCH_UPS = Counter("stream_catch_ups_total",
                    "Catch-ups of the trade feeds from Redis after a NATS reconnect")
CACHE_READS = Counter("stream_cache_reads_total",
                      "Redis reads for snapshots and catch-ups (concurrent readers share one)",
                      ["channel"])
REFUSED = Counter("stream_clients_refused_total",
                  "WebSocket upgrades refused with 503 because EX_WS_MAX_CLIENTS were connected")
