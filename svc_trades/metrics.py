"""svc_trades' Prometheus metrics, defined once; labels are low-cardinality only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LAG = Gauge("trades_projection_lag_messages",
            "Journal messages the projection has not reached yet")
BATCH_MESSAGES = Histogram("trades_projection_batch_messages", "Journal messages per batch",
                           buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000))
BATCH_SECONDS = Histogram("trades_projection_batch_seconds",
                          "Time to project one batch, fetch to acknowledgement",
                          buckets=(1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0))
MESSAGES = Counter("trades_projection_messages_total", "Journal messages handled",
                   ["outcome"])  # projected | duplicate | parked
REFUSED = Counter("trades_projection_refused_messages_total",
                  "Decodable journal messages parked because their rows cannot be stored "
                  "(PostgreSQL refused them) or folded: an alarm, each one needs a look")
TRADES = Counter("trades_projection_trades_total", "Trades projected")
GAPS = Counter("trades_projection_gaps_total",
               "Batches whose instrument sequence skipped numbers (journal lost a prefix)")
ORPHANS = Counter("trades_projection_orphan_events_total",
                  "Events naming an order the projection never saw; not folded")
SETTLEMENTS = Counter("trades_settlements_total", "Settlement requests", ["outcome"])
