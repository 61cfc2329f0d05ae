"""svc_orders' Prometheus metrics, defined once; labels are low-cardinality only."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter("orders_commands_total", "Commands handled", ["kind", "outcome"])


@functools.cache
def commands(kind: str, outcome: str) -> Counter:
    """`COMMANDS`' child for one kind and outcome, looked up once: `labels` validates
    and takes a lock on every call, a microsecond of every command."""
    return COMMANDS.labels(kind, outcome)


MATCH_SECONDS = Histogram("orders_match_seconds", "Engine time per command",
                          buckets=(1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2))
JOURNAL_ACK_SECONDS = Histogram("orders_journal_ack_seconds",
                                "Wait for the JetStream ack of a journal message",
                                buckets=(1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 1.0))
JOURNAL_IN_FLIGHT = Gauge("orders_journal_in_flight", "Commands awaiting their JetStream ack")
JOURNAL_GROUP = Histogram("orders_journal_group_commands",
                          "Commands per journal message (group commit)",
                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
RECOVERIES = Counter("orders_recoveries_total", "Engine rebuilds from snapshot and journal")
RECOVERY_FAILURES = Counter("orders_recovery_failures_total",
                            "Rebuilds from snapshot and journal that failed")
# An alarm: while it is above 0, svc_orders stays unready (README, Durability).
JOURNAL_UNREADABLE = Gauge("orders_journal_unreadable",
                           "Stream sequence of the journal message recovery cannot replay, "
                           "0 if none")
SNAPSHOTS = Counter("orders_snapshots_total", "Engine snapshots written")
BOOK_LEVELS = Gauge("orders_book_levels", "Price levels in the published book (top 100)",
                    ["symbol", "side"])
MD_MESSAGES = Counter("orders_md_messages_total", "Market-data messages published", ["kind"])
REDIS_SKIPPED = Counter("orders_redis_writes_skipped_total",
                        "Cache writes skipped or failed because Redis was down")
ROLE = Gauge("orders_role", "1 for this instance's role: leader or standby", ["role"])
LEASE_RENEWALS = Counter("orders_lease_renewals_total", "Leader lease renewals")
LEASE_FAILURES = Counter("orders_lease_failures_total",
                         "Lease requests that failed (NATS unreachable or no answer)")
TAKEOVERS = Counter("orders_takeovers_total", "Times this instance became the leader")
STANDBY_LAG = Gauge("orders_standby_lag_messages",
                    "Journal messages a standby has yet to apply, as of its last look")
