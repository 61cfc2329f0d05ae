"""Real NATS, PostgreSQL and Redis servers run from their PyPI wheels.

The embedded stack behind ``./ops/run``, the test fixtures and the benchmarks: each
server gets a port on 127.0.0.1 (a free one unless given) and its own data folder. No
pytest imports here, so the launcher can reuse it.
"""

from ops.stack.process import HOST, EmbeddedServer, ServerStartError, free_port, log_tail
from ops.stack.servers import (
    NatsServer,
    PostgresServer,
    RedisServer,
    cluster_url,
    nats_cluster,
)

__all__ = [
    "HOST",
    "EmbeddedServer",
    "NatsServer",
    "PostgresServer",
    "RedisServer",
    "ServerStartError",
    "cluster_url",
    "free_port",
    "log_tail",
    "nats_cluster",
]
