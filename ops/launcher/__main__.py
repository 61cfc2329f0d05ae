"""`python -m ops.launcher`, run by ./ops/run: the whole exchange on one machine.

Runs real NATS (JetStream), PostgreSQL and Redis from the PyPI wheels (ops.stack) with
their data under `.run/`, then the three services, all kept running by the supervisor
(a server or service that dies is restarted) until Ctrl-C, SIGTERM or SIGHUP. Why it
behaves as it does:

- Shutdown goes in dependency order: the services first, while the servers they drain
  to are still up, then the servers. Every child has its own process group so that the
  terminal's Ctrl-C reaches only the launcher and this order holds.
- Data folders persist across runs, so a restart resumes the books and the history
  (Redis holds caches only and keeps nothing).
- Ports are the usual ones (4222, 5432, 6379) unless busy, then any free one; URLs in
  `EX_NATS_URL`, `EX_PG_DSN`, `EX_REDIS_URL` replace the embedded server of that kind.
  The service ports are never moved: clients rely on them.
- The embedded NATS admits only its users (ops.stack.natsusers), each service as its
  own with only the subjects it needs; the passwords, made once per data folder, reach
  each service in its EX_NATS_USER / EX_NATS_PASSWORD and are never printed. The
  embedded PostgreSQL and Redis ask for a password too (in `<run dir>/postgres/password`
  and `<run dir>/redis/password`), given to the services inside EX_PG_DSN / EX_REDIS_URL.
- Everything the user has to fix (a bad EX_ value, a busy service port, a second launcher
  on the same folder, a non-loopback EX_HOST with EX_AUTH=off) is said in one line
  before anything starts.
- EX_NATS_CLUSTER=3 runs three nats-server nodes as one JetStream cluster (each its own
  data folder under nats-cluster/, restarted alone) and tells the services to keep three
  replicas; EX_ORDERS_STANDBYS=N runs N more svc_orders as hot standbys, watched by
  /health/ since whichever instance leads is the one whose /ready/ is 200.
- With EX_AUTH=on and no live admin key yet, the first start creates one once the
  servers are up and prints it, secret included, this once: nowhere else shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import msgspec

from common.config import Settings, check_protected_mode, load_settings
from ops import keys
from ops.launcher.children import REPO, Server, Service
from ops.launcher.supervisor import STOP_SIGNALS, Supervisor
from ops.launcher.terminal import say, shown
from ops.stack import (
    HOST,
    EmbeddedServer,
    NatsServer,
    PostgresServer,
    RedisServer,
    ServerStartError,
    cluster_url,
    free_port,
    nats_cluster,
)
from ops.stack.natsusers import ADMIN

ENV_HELP = """\
environment:
  EX_RUN_DIR          data and logs folder (default <repo>/.run)
  EX_NATS_URL, EX_PG_DSN, EX_REDIS_URL
                      use that external server and start none of its kind
  EX_NATS_PORT, EX_NATS_MONITOR_PORT, EX_PG_PORT, EX_REDIS_PORT
                      ports of the embedded servers (default 4222, 8222, 5432, 6379;
                      a free port instead of a default one that is busy)
  EX_HOST, EX_ORDERS_PORT, EX_TRADES_PORT, EX_STREAM_PORT
                      where the services listen (default 127.0.0.1, 8000, 8001, 8002)
  EX_NATS_CLUSTER=3   three nats-server nodes as one JetStream cluster (ports
                      EX_NATS_PORT + 0, 1, 2), every stream and bucket on each
  EX_ORDERS_STANDBYS=N
                      N hot-standby svc_orders next to the first, on EX_ORDERS_PORT
                      + 10, + 20, ...; whichever holds the lease takes the orders
  other EX_ variables reach the services unchanged (see common/config.py)

The embedded NATS has a user per service and `admin` (for ops tools such as
python -m ops.keys); their passwords are in <run dir>/nats/users/<user>.
"""


class LaunchError(Exception):
    """Something the user has to fix; the message says what."""


# -- embedded servers -------------------------------------------------------------------


def _port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on host:port (SO_REUSEADDR, as servers bind: a socket in
    TIME_WAIT from the previous run does not make the port busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _server_port(env: Mapping[str, str], var: str, default: int, what: str) -> int:
    """The port `var` asks for, else `default` if free, else any free port (and say so)."""
    if var in env:
        try:
            return int(env[var])
        except ValueError:
            raise LaunchError(f"{var}={env[var]!r} is not a port number") from None
    if _port_is_free(default):
        return default
    port = free_port()
    say(f"port {default} is busy; {what} uses port {port} instead")
    return port


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _servers(env: Mapping[str, str], run_dir: Path) -> tuple[list[Server], dict[str, str]]:
    """The embedded servers that no EX_ URL replaces, and their EX_ URLs."""
    servers: list[tuple[str, EmbeddedServer, str]] = []  # (variable, server, its URL)
    nodes = _count(env, "EX_NATS_CLUSTER", 1, 5)
    if "EX_NATS_URL" not in env and nodes == 1:
        nats = NatsServer(run_dir / "nats", _server_port(env, "EX_NATS_PORT", 4222, "nats"),
                          monitor_port=_server_port(env, "EX_NATS_MONITOR_PORT", 8222,
                                                    "the nats monitor"), users=True)
        servers.append(("EX_NATS_URL", nats, nats.url))
    elif "EX_NATS_URL" not in env:
        first = _server_port(env, "EX_NATS_PORT", 4222, "nats")
        monitor = _server_port(env, "EX_NATS_MONITOR_PORT", 8222, "the nats monitor")
        cluster = nats_cluster(
            run_dir / "nats-cluster",
            [first, *(_server_port({}, "", first + n, f"nats node {n + 1}")
                      for n in range(1, nodes))],
            [monitor, *(_server_port({}, "", monitor + n, f"nats node {n + 1}'s monitor")
                        for n in range(1, nodes))],
            users=True)
        servers += [("EX_NATS_URL", node, cluster_url(cluster)) for node in cluster]
    if "EX_PG_DSN" not in env:
        postgres = PostgresServer(run_dir / "postgres",
                                  _server_port(env, "EX_PG_PORT", 5432, "postgres"),
                                  password=True)
        servers.append(("EX_PG_DSN", postgres, postgres.dsn))
    if "EX_REDIS_URL" not in env:
        redis = RedisServer(run_dir / "redis",
                            _server_port(env, "EX_REDIS_PORT", 6379, "redis"), password=True)
        servers.append(("EX_REDIS_URL", redis, redis.url))
    for var in ("EX_NATS_URL", "EX_PG_DSN", "EX_REDIS_URL"):
        if var in env:
            say(f"using the external server in {var}={_redact(env[var])}")
    urls = {var: url for var, _, url in servers}
    if nodes > 1:  # each stream and bucket on every node: losing one loses nothing
        urls["EX_NATS_REPLICAS"] = str(nodes)
    return [Server(server) for _, server, _ in servers], urls


def _count(env: Mapping[str, str], var: str, default: int, most: int) -> int:
    raw = env.get(var, str(default))
    if not raw.isdigit() or not default <= int(raw) <= most:
        raise LaunchError(f"{var}={raw!r}: give a whole number from {default} to {most}")
    return int(raw)


@contextlib.contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """One launcher per data folder: a second one would fight the first over the
    PostgreSQL cluster and the ports. The lock dies with the process, even on kill -9."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "launcher.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LaunchError(f"another ./ops/run is already using {shown(run_dir)}") from None
        yield


# -- services ---------------------------------------------------------------------------


def _services(settings: Settings, standbys: int, log_dir: Path) -> list[Service]:
    """The three services, and `standbys` more svc_orders on EX_ORDERS_PORT + 10 n.

    With standbys, any svc_orders instance may be the leader, so the supervisor watches
    each one's /health/ (a standby's /ready/ is 503 by design), and each one tells clients
    where it is (EX_ORDERS_URL, named in the NOT_LEADER answers of the others)."""
    # A service bound to every interface is still probed on the loopback.
    host = HOST if settings.host in ("0.0.0.0", "", "::") else settings.host
    services = [
        Service(module, var, host, port, log_dir / f"{module}.log")
        for module, var, port in (
            ("svc_orders", "EX_ORDERS_PORT", settings.orders_port),
            ("svc_trades", "EX_TRADES_PORT", settings.trades_port),
            ("svc_stream", "EX_STREAM_PORT", settings.stream_port),
        )
    ]
    if standbys:
        orders = [services[0]] + [
            Service("svc_orders", "EX_ORDERS_PORT", host, settings.orders_port + 10 * n,
                    log_dir / f"svc_orders-{n}.log", name=f"svc_orders-{n}")
            for n in range(1, standbys + 1)]
        for svc in orders:
            svc.probe_path = "/health/"
            svc.env |= {"EX_ORDERS_PORT": str(svc.port),
                        "EX_ORDERS_URL": f"http://{host}:{svc.port}"}
        services[1:1] = orders[1:]
    return services


def _log_in(services: list[Service], servers: list[Server]) -> dict[str, str]:
    """Give each service its login to the embedded NATS, if it runs one; the admin's
    login is returned for the launcher's own work (the first admin key)."""
    for child in servers:
        if isinstance(child.server, NatsServer) and child.server.users:
            credentials = child.server.credentials
            for svc in services:
                svc.env |= {"EX_NATS_USER": svc.module,
                            "EX_NATS_PASSWORD": credentials[svc.module]}
            say(f"nats users: passwords in {shown(child.server.data_dir / 'users')}/")
            return {"EX_NATS_USER": ADMIN, "EX_NATS_PASSWORD": credentials[ADMIN]}
    return {}


async def _first_admin_key(env: Mapping[str, str]) -> None:
    """Create and print the first admin key if no admin key is live (auth on)."""
    issued = await keys.create(load_settings(env), None, None)
    if issued is not None:
        say("no admin key yet: created this one (its secret is shown only now)\n"
            f"{json.dumps(msgspec.to_builtins(issued))}")


# -- entry point ------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """A stop signal before the supervisor runs: unwind as Ctrl-C does by default, so
    that the lock is released and the launcher says it stopped."""
    raise KeyboardInterrupt


def _supervise(supervisor: Supervisor, servers: list[Server], services: list[Service],
               ready_timeout: float) -> int:
    """Run the supervisor; a server that cannot be started at all (a missing binary, a
    failed initdb) ends it with that server's error, not a group of task errors."""
    try:
        return asyncio.run(supervisor.run(servers, services, ready_timeout))
    except* ServerStartError as errors:
        raise errors.exceptions[0] from None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./ops/run",
        description="Run NATS, PostgreSQL, Redis and the three exchange services on this\n"
        "machine, and keep them running (restarted if one dies) until Ctrl-C.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ready-timeout", type=float, default=90.0, metavar="SECONDS",
                        help="give up if the services are not all ready by then (default 90)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    began = time.monotonic()
    args = _parse_args(argv)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    env = dict(os.environ)
    stack = ExitStack()
    try:
        try:
            settings = load_settings(env)
            check_protected_mode(settings)
        except ValueError as error:
            raise LaunchError(str(error)) from None
        run_dir = Path(env.get("EX_RUN_DIR") or REPO / ".run").resolve()
        stack.enter_context(_exclusive(run_dir))
        services = _services(settings, _count(env, "EX_ORDERS_STANDBYS", 0, 9),
                             run_dir / "logs")
        for svc in services:
            if not _port_is_free(svc.port, svc.host):
                raise LaunchError(f"port {svc.port} for {svc.module} is in use; stop what "
                                  f"uses it or set {svc.port_var} to another port")
        stack.callback(say, "stopped")  # runs last
        servers, urls = _servers(env, run_dir)
        admin_login = _log_in(services, servers)
        env |= urls
        env["PYTHONUNBUFFERED"] = "1"
        say(f"service logs: {shown(run_dir / 'logs')}/<service>.log, and below")
        first_admin = ((lambda: _first_admin_key(env | admin_login))
                       if settings.auth == "on" else None)
        return _supervise(Supervisor(env, began, first_admin), servers, services,
                          args.ready_timeout)
    except KeyboardInterrupt:
        say("interrupted: stopping")
        return 0
    except (LaunchError, ServerStartError) as error:
        print(f"./ops/run: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
