"""compose.yaml's structure, checked without a Docker engine (none is available here).

What would otherwise break only at `docker compose up`: a missing service, a service
pointed at localhost instead of the server's container, a health check or a dependency
order that is missing, a service that runs the wrong module.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ops.stack import natsusers

REPO = Path(__file__).resolve().parent.parent
NATS_NODES = {"nats-1", "nats-2", "nats-3"}
SERVERS = {*NATS_NODES, "postgres", "redis"}
# Each service twice: (module, port in the container, port published).
INSTANCES = {
    "svc_orders": ("svc_orders", 8000, 8000), "svc_orders_2": ("svc_orders", 8000, 8010),
    "svc_trades": ("svc_trades", 8001, 8001), "svc_trades_2": ("svc_trades", 8001, 8011),
    "svc_stream": ("svc_stream", 8002, 8002), "svc_stream_2": ("svc_stream", 8002, 8012),
}
PORTS = {"svc_orders": 8000, "svc_trades": 8001, "svc_stream": 8002}
# Which servers each EX_ variable must point at, by their compose service names.
URL_HOSTS = {"EX_NATS_URL": NATS_NODES, "EX_PG_DSN": {"postgres"}, "EX_REDIS_URL": {"redis"}}


def interpolated(value: str) -> str:
    """`value` as compose would pass it with every `${NAME:?message}` set to NAME (the
    message may hold characters that would break a URL's parsing)."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"\1", value)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def test_it_has_the_servers_and_two_instances_of_each_service(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == SERVERS | set(INSTANCES)


def test_servers_use_the_official_images(services: dict[str, dict[str, Any]]) -> None:
    for name in SERVERS:
        assert services[name]["image"].split(":")[0] == name.split("-")[0]


def test_nats_runs_jetstream_on_a_volume(services: dict[str, dict[str, Any]]) -> None:
    for name in NATS_NODES:
        nats = services[name]
        command = nats["command"]
        assert "-js" in command
        store = command[command.index("-sd") + 1]
        assert any(volume.split(":")[1] == store for volume in nats["volumes"])


def test_nats_runs_as_one_cluster_of_three_nodes_with_three_replicas(
    services: dict[str, dict[str, Any]],
) -> None:
    volumes = set()
    for name in NATS_NODES:
        command = services[name]["command"]
        assert command[command.index("-n") + 1] == name
        assert command[command.index("--cluster_name") + 1] == "exchange"
        routes = command[command.index("--routes") + 1].split(",")
        assert {urlsplit(route).hostname for route in routes} == NATS_NODES
        volumes.add(services[name]["volumes"][0])
    assert len(volumes) == len(NATS_NODES), "each node keeps its own store"
    for name in INSTANCES:
        assert services[name]["environment"]["EX_NATS_REPLICAS"] == "3", name


def test_postgres_keeps_its_data_on_a_volume(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(postgres["environment"])


def test_every_container_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    """svc_orders' containers are healthy while they run: a standby's /ready/ is 503."""
    probes = {
        **{name: "http://127.0.0.1:8222/healthz" for name in NATS_NODES},
        "postgres": "pg_isready",
        "redis": "ping",
        **{name: f"http://127.0.0.1:{port}/"
                 f"{'health' if module == 'svc_orders' else 'ready'}/"
           for name, (module, port, _) in INSTANCES.items()},
    }
    for name, probe in probes.items():
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert any(probe in part for part in test), (name, test)


def test_each_service_runs_its_own_module_from_the_one_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    assert (REPO / "Dockerfile").is_file()
    assert (REPO / ".dockerignore").is_file()
    for name, (module, _, _) in INSTANCES.items():
        service = services[name]
        assert service["build"] in (".", {"context": "."}), name
        assert service["command"] == ["python", "-m", module]


def test_each_service_publishes_its_port(services: dict[str, dict[str, Any]]) -> None:
    for name, (_, port, published) in INSTANCES.items():
        assert services[name]["ports"] == [f"{published}:{port}"]


def test_each_order_service_names_where_clients_reach_it(
    services: dict[str, dict[str, Any]],
) -> None:
    """The other instance's NOT_LEADER answers name it."""
    for name, (module, _, published) in INSTANCES.items():
        if module == "svc_orders":
            url = services[name]["environment"]["EX_ORDERS_URL"]
            assert urlsplit(url).port == published, name


def test_only_the_services_publish_ports(services: dict[str, dict[str, Any]]) -> None:
    for name in SERVERS:
        assert "ports" not in services[name], f"{name} must not be reachable from outside"


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "REDIS_PASSWORD"])
def test_no_default_database_password(variable: str) -> None:
    """`${VAR:?message}` stops `docker compose up` when the variable is unset."""
    text = (REPO / "compose.yaml").read_text()
    uses = [part.split("}")[0] for part in text.split("${" + variable)[1:]]
    assert uses, f"compose.yaml should take {variable} from the environment"
    assert all(use.startswith(":?") for use in uses), uses


def test_redis_requires_the_password_and_every_service_gives_it(
    services: dict[str, dict[str, Any]],
) -> None:
    """Auth is on, so Redis (rate-limit counters, book and trade caches) asks for a
    password: `requirepass` read from the container's environment on stdin, never on
    redis-server's command line (`ps` shows that); the health check logs in without one
    too (REDISCLI_AUTH); each service has it in EX_REDIS_URL."""
    redis = services["redis"]
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
    shell, option, script = redis["command"]
    assert (shell, option) == ("sh", "-c")
    server, _, stdin = script.partition("<<EOF\n")
    args = shlex.split(server)
    assert args[:3] == ["exec", "docker-entrypoint.sh", "redis-server"]  # as user redis
    assert args[-1] == "-", "the configuration comes on stdin"
    assert not any("requirepass" in arg or "PASSWORD" in arg for arg in args), args
    assert args[args.index("--save") + 1] == ""  # caches only
    assert args[args.index("--appendonly") + 1] == "no"
    assert stdin.splitlines() == ['requirepass "$$REDIS_PASSWORD"', "EOF"]
    health = " ".join(redis["healthcheck"]["test"])
    assert 'REDISCLI_AUTH="$$REDIS_PASSWORD"' in health, health
    assert "grep -q PONG" in health, "redis-cli exits 0 on NOAUTH too"
    for name in INSTANCES:
        url = urlsplit(interpolated(services[name]["environment"]["EX_REDIS_URL"]))
        assert (url.password, url.hostname) == ("REDIS_PASSWORD", "redis"), name


def test_services_reach_the_servers_by_their_service_names(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in INSTANCES:
        env = services[name]["environment"]
        assert env["EX_HOST"] == "0.0.0.0", "the default 127.0.0.1 is unreachable from outside"
        for var, hosts in URL_HOSTS.items():
            named = {urlsplit(url).hostname for url in interpolated(env[var]).split(",")}
            assert named == hosts, (name, var, env[var])
        assert all(var.startswith("EX_") for var in env), name


def test_services_require_auth_and_a_secret_key_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    """They listen on every interface: without auth anyone could act on any order."""
    for name in INSTANCES:
        env = services[name]["environment"]
        assert env["EX_AUTH"] == "on", name
        assert env["EX_FUNDING"] == "on", name  # orders backed by balances
        assert env["EX_SECRET_KEY"].startswith("${EX_SECRET_KEY:?"), name
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "EX_AUTH=on" in dockerfile
    assert "COPY ops/__init__.py ops/keys.py ./ops/" in dockerfile


def test_services_start_after_their_servers_are_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    needs = {"svc_orders": {*NATS_NODES, "redis"}, "svc_trades": SERVERS,
             "svc_stream": {*NATS_NODES, "redis"}}
    for name, (module, _, _) in INSTANCES.items():
        servers = needs[module]
        depends_on = services[name]["depends_on"]
        assert servers <= set(depends_on), name
        for server in depends_on:
            assert depends_on[server] == {"condition": "service_healthy"}, (name, server)


def test_the_dockerfile_installs_the_project_and_runs_a_service() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install" in dockerfile
    for package in ("common", *PORTS):
        assert f"COPY {package} " in dockerfile, package
    # The services must listen on every interface inside a container.
    assert "EX_HOST=0.0.0.0" in dockerfile


def test_the_installed_package_has_every_data_file_the_services_read() -> None:
    """The image runs a regular install, which leaves out any file that is neither a module
    nor declared package data (svc_trades' SQL migrations, for one)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    data_files = [
        (package, path) for package in ("common", *PORTS)
        for path in (REPO / package).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert data_files, "expected at least svc_trades' migrations"
    for package, path in data_files:  # "*" patterns by name, a package's by its path
        inside = path.relative_to(REPO / package).as_posix()
        assert (any(fnmatch.fnmatch(path.name, pattern) for pattern in package_data["*"])
                or any(fnmatch.fnmatch(inside, pattern)
                       for pattern in package_data.get(package, []))), path


def test_nats_admits_only_its_users_with_the_config_of_the_table(
    services: dict[str, dict[str, Any]],
) -> None:
    """The users' file is mounted and read; each password comes from the environment
    without a default (tests/stack/test_natsusers.py compares the file with the table)."""
    assert (REPO / "ops" / "compose" / "nats.conf").is_file()
    text = (REPO / "ops" / "compose" / "nats.conf").read_text()
    for name in NATS_NODES:
        nats = services[name]
        command = nats["command"]
        config = command[command.index("-c") + 1]
        assert f"./ops/compose/nats.conf:{config}:ro" in nats["volumes"]
        for user in natsusers.USERS:
            variable = natsusers.environment_variable(user)
            assert f"password: ${variable}," in text
            assert nats["environment"][variable] == f"${{{variable}:?set {variable}}}"


def test_each_service_logs_in_to_nats_as_its_own_user(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, (module, _, _) in INSTANCES.items():
        env = services[name]["environment"]
        variable = natsusers.environment_variable(module)
        assert (env["EX_NATS_USER"], env["EX_NATS_PASSWORD"]) == (
            module, f"${{{variable}:?set {variable}}}"), name
