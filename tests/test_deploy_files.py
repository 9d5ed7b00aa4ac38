"""The deployment files, checked without a Docker engine (none runs on the development machines):
Dockerfile, .dockerignore, compose.yaml, deploy/compose.haproxy.yaml, deploy/nginx.conf,
deploy/haproxy.cfg and deploy/env.example are parsed and checked against each other and
against Syncline's own settings; the image's HEALTHCHECK command is run against HTTP servers
and against a real leader and standby; the migration lock the nodes rely on when they start
together is exercised on a real database. docs/deploy.md says what this does not cover."""

from __future__ import annotations

import asyncio
import gc
import http.server
import ipaddress
import json
import re
import shlex
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from syncline.db import migrate
from syncline.db.migrate_child import upgrade_in_child
from syncline.settings import Settings, load_settings

from helpers.live_server import start_live_server, stop_live_server

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
HAPROXY_OVERRIDE = ROOT / "deploy" / "compose.haproxy.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"

NODE_PREFIX = "syncline-"
WEBSOCKET_PATH = "/connection/websocket"
# What every node needs to join the cluster and to be reached through the load balancer.
REQUIRED_NODE_ENV = {
    "DATABASE_URL",
    "SYNCLINE_ENGINE",
    "SYNCLINE_JWT_SECRET",
    "SYNCLINE_API_KEY",
    "SYNCLINE_HOST",
    "SYNCLINE_PUBLIC_WS_URL",
    "SYNCLINE_TRUSTED_PROXIES",
}
# Secrets compose must refuse to start without (`${VAR:?message}`), never with a default.
REQUIRED_SECRETS = {"POSTGRES_PASSWORD", "SYNCLINE_JWT_SECRET", "SYNCLINE_API_KEY"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE|DATABASE_URL", re.I)
# Settings.ping_interval's upper bound: a proxy's idle timeout at least this long never cuts a
# WebSocket whose node still pings it.
MAX_PING_INTERVAL_S = next(
    float(m.le) for m in Settings.model_fields["ping_interval"].metadata if hasattr(m, "le")
)
SHUTDOWN_TIMEOUT_S = float(Settings.model_fields["shutdown_timeout"].default)


# -- compose -------------------------------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: its `!override` and `!reset` merge tags are plain values."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!override", _tagged)
_ComposeLoader.add_constructor("!reset", _tagged)


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_ComposeLoader)
    assert isinstance(data, dict)
    return data


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(Exception):
    """A `${VAR:?message}` whose variable is unset: compose refuses to start."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = not value
        if op == ":-":
            return arg if unset_or_empty else str(value)
        if op == "-":
            return arg if value is None else value
        if op == ":?" and unset_or_empty:
            raise MissingVariableError(f"{name}: {arg}")
        if op == "?" and value is None:
            raise MissingVariableError(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(substitute, value)


def required_variables(text: str) -> set[str]:
    """The variables a file requires (`${VAR:?...}` or `${VAR?...}`)."""
    return {m["braced"] for m in _VARIABLE.finditer(text) if m["op"] in (":?", "?")}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose accepts a list of KEY=VALUE too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


@pytest.fixture(scope="module")
def nodes(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if name.startswith(NODE_PREFIX)}


def example_env() -> dict[str, str]:
    """What a filled-in .env gives compose: deploy/env.example with its secrets set."""
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    for name in REQUIRED_SECRETS:
        env[name] = f"{name.lower()}-" + "0123456789abcdef" * 4
    return env


def node_settings(node: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a node would start with under compose (after interpolation)."""
    env = example_env()
    for key, value in environment(node).items():
        monkeypatch.setenv(key, interpolate(value, env))
    return load_settings()


def published_port(service: Mapping[str, Any]) -> tuple[int, int]:
    """(host port, container port) of a service's one published port."""
    (spec,) = service["ports"]
    parts = str(spec).split(":")
    return int(parts[-2]), int(parts[-1].split("/")[0])


def test_compose_has_the_database_redis_two_nodes_and_a_load_balancer(
    services: dict[str, dict[str, Any]], nodes: dict[str, dict[str, Any]]
) -> None:
    assert {"postgres", "redis", "lb"} <= set(services)
    assert len(nodes) >= 2


def test_postgres_runs_with_logical_replication_a_health_check_and_a_volume(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres" and tag.split(".")[0].isdigit(), "pin the official image's major"
    command = postgres["command"]
    words = command.split() if isinstance(command, str) else list(command)
    assert words[0] == "postgres"
    options = {words[i + 1] for i, word in enumerate(words[:-1]) if word == "-c"}
    assert "wal_level=logical" in options
    assert any(o.startswith("max_replication_slots=") for o in options)
    assert any(o.startswith("max_wal_senders=") for o in options)
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    (volume,) = postgres["volumes"]
    name, target = volume.split(":")[:2]
    assert name in compose["volumes"]
    # From 18 on the official image keeps its data in <major>/docker below /var/lib/postgresql
    # and refuses to start with a volume at the old /var/lib/postgresql/data.
    major = int(tag.split(".")[0])
    assert target == ("/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data")


def test_redis_keeps_an_append_only_file_on_a_volume(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis"
    assert redis["image"].split(":")[1].startswith("7")
    command = [interpolate(str(word), {}) for word in redis["command"]]
    assert command[0] == "redis-server"
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] in ("everysec", "always")
    assert interpolate(redis["command"][-1], {"REDIS_APPENDFSYNC": "always"}) == "always"
    (volume,) = redis["volumes"]
    name, target = volume.split(":")[:2]
    assert name in compose["volumes"] and target == "/data"
    assert "ping" in redis["healthcheck"]["test"]


def test_every_node_builds_this_dockerfile_and_waits_for_healthy_dependencies(
    nodes: dict[str, dict[str, Any]],
) -> None:
    images = set()
    for name, node in nodes.items():
        build = node["build"]
        context = build if isinstance(build, str) else build["context"]
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE, name
        images.add(node.get("image"))
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert node["depends_on"]["redis"]["condition"] == "service_healthy", name
        # The image's HEALTHCHECK decides when a node is healthy: compose must not switch it off.
        assert not node.get("healthcheck", {}).get("disable", False), name
        assert "healthcheck" not in node or "/readyz" in str(node["healthcheck"]["test"]), name
        # SIGTERM must reach `syncline up` (tini), and the stop must outlast its drain.
        assert node.get("init") is True, name
        assert _seconds(node["stop_grace_period"]) > SHUTDOWN_TIMEOUT_S, name
        assert "hostname" not in node or node["hostname"] == name, name
    assert len(images) == 1, "every node runs the same image"


def test_every_node_gets_the_same_environment_with_what_a_cluster_needs(
    nodes: dict[str, dict[str, Any]],
) -> None:
    environments = [environment(node) for node in nodes.values()]
    for env in environments:
        assert env == environments[0], "nodes differ in their environment"
        assert set(env) >= REQUIRED_NODE_ENV, REQUIRED_NODE_ENV - set(env)
    # The secrets are required (`${VAR:?}`): none has a default a cluster could run with.
    assert required_variables(json.dumps(environments[0])) == REQUIRED_SECRETS


def test_every_variable_a_node_is_given_is_a_setting(nodes: dict[str, dict[str, Any]]) -> None:
    """A misspelt SYNCLINE_* variable is silently ignored by Syncline: catch it here."""
    fields = set(Settings.model_fields)
    for name, node in nodes.items():
        for key in environment(node):
            if key == "DATABASE_URL":
                continue
            assert key.startswith("SYNCLINE_"), f"{name}: {key} is not a Syncline setting"
            assert key.removeprefix("SYNCLINE_").lower() in fields, f"{name}: no setting {key}"


def test_a_node_starts_with_settings_that_point_at_the_services_and_the_balancer(
    nodes: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
    compose: dict[str, Any],
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clean_env.chdir(tmp_path)  # no syncline.toml of the caller's
    settings = node_settings(next(iter(nodes.values())), clean_env)
    assert settings.host == "0.0.0.0"
    assert settings.jwt_secret is not None and settings.api_key is not None
    assert settings.database_url is not None
    database = urlsplit(settings.database_url.get_secret_value())
    postgres_env = environment(services["postgres"])
    assert (database.hostname, database.port or 5432) == ("postgres", 5432)
    assert database.username == postgres_env["POSTGRES_USER"]
    assert database.path == "/" + postgres_env["POSTGRES_DB"]
    engine = urlsplit(settings.engine)
    assert (engine.scheme, engine.hostname, engine.port) == ("redis", "redis", 6379)
    # Clients are sent to the balancer, on the port it publishes, and come from its address.
    host_port, _ = published_port(services["lb"])
    assert settings.public_ws_url is not None and settings.public_url is not None
    ws = urlsplit(settings.public_ws_url)
    assert (ws.scheme, ws.port, ws.path) == ("ws", host_port, WEBSOCKET_PATH)
    assert urlsplit(settings.public_url).port == host_port
    assert settings.public_url in settings.cors_origins, "the UI's origin may open WebSockets"
    lb_address = ipaddress.ip_address(services["lb"]["networks"]["syncline"]["ipv4_address"])
    subnet = ipaddress.ip_network(compose["networks"]["syncline"]["ipam"]["config"][0]["subnet"])
    assert lb_address in subnet
    assert any(lb_address in ipaddress.ip_network(p) for p in settings.trusted_proxies)
    assert not any(
        ipaddress.ip_network(p).num_addresses > subnet.num_addresses
        for p in settings.trusted_proxies
    ), "trust the balancer, not the world"


def test_compose_refuses_to_start_without_the_secrets(nodes: dict[str, dict[str, Any]]) -> None:
    env = example_env()
    node = next(iter(nodes.values()))
    for secret in REQUIRED_SECRETS:
        missing = {k: v for k, v in env.items() if k != secret}
        with pytest.raises(MissingVariableError, match=secret):
            interpolate(json.dumps(environment(node)), missing)
    text = COMPOSE.read_text()
    assert required_variables(text) == REQUIRED_SECRETS
    example = ENV_EXAMPLE.read_text()
    for secret in REQUIRED_SECRETS:
        assert re.search(rf"^{secret}=$", example, re.M), f"{secret} missing from env.example"


def test_only_the_load_balancer_publishes_ports_and_it_waits_for_every_node(
    services: dict[str, dict[str, Any]], nodes: dict[str, dict[str, Any]]
) -> None:
    assert [name for name, svc in services.items() if svc.get("ports")] == ["lb"]
    depends = services["lb"]["depends_on"]
    for name in nodes:
        assert depends[name]["condition"] == "service_healthy", name


def test_the_nginx_and_haproxy_load_balancers_get_their_config_files(
    services: dict[str, dict[str, Any]],
) -> None:
    lb = services["lb"]
    assert lb["image"].split(":")[0] == "nginx"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    override = load_yaml(HAPROXY_OVERRIDE)["services"]
    assert set(override) == {"lb"}
    assert override["lb"]["image"].split(":")[0] == "haproxy"
    assert override["lb"]["volumes"] == [
        "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"
    ]
    assert "volumes: !override" in HAPROXY_OVERRIDE.read_text(), "replace nginx.conf's mount"


def _seconds(value: str | int) -> float:
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    assert match, f"not a duration: {value}"
    return float(match[1]) * units[match[2] or "s"]


# -- Dockerfile ----------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int

    def json_or_shell(self) -> list[str]:
        """The exec form (a JSON array) as a list, or the shell form split like a shell."""
        text = self.args.strip()
        if text.startswith("["):
            parsed = json.loads(text)
            assert isinstance(parsed, list)
            return [str(part) for part in parsed]
        return shlex.split(text)


@dataclass
class Dockerfile:
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str, stage: int | None = None) -> list[Instruction]:
        return [
            i
            for i in self.instructions
            if i.keyword == keyword and (stage is None or i.stage == stage)
        ]

    @property
    def final_stage(self) -> int:
        return max(i.stage for i in self.instructions)


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuation lines joined, comments dropped, and the stage each is in
    (0 for the ARGs before the first FROM)."""
    parsed = Dockerfile()
    stage = 0
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        parsed.instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return parsed


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


def _global_args(dockerfile: Dockerfile) -> dict[str, str]:
    args = {}
    for instruction in dockerfile.all("ARG", stage=0):
        name, _, default = instruction.args.partition("=")
        args[name] = default
    return args


def _options(args: str) -> tuple[dict[str, str], str]:
    """`--name=value` options at the front of an instruction's arguments, and the rest."""
    options = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        rest = rest.lstrip()
    return options, rest


def test_the_image_is_built_in_stages_on_slim_python(dockerfile: Dockerfile) -> None:
    args = _global_args(dockerfile)
    froms = dockerfile.all("FROM")
    assert len(froms) >= 2, "a build stage and a runtime stage"
    for instruction in froms:
        image = instruction.args.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        name, _, tag = image.partition(":")
        assert name == "python" and "-slim" in tag, image
        assert re.match(r"3\.1[1-9]", tag), f"{image}: Syncline needs Python 3.11+"
    copies = dockerfile.all("COPY", stage=dockerfile.final_stage)
    assert any(_options(c.args)[0].get("from") for c in copies), "runtime copies from the build"
    runs = dockerfile.all("RUN", stage=dockerfile.final_stage)
    assert all("pip install" not in run.args for run in runs), "the runtime stage installs nothing"


def test_the_image_runs_as_a_user_that_is_not_root(dockerfile: Dockerfile) -> None:
    final = dockerfile.final_stage
    users = dockerfile.all("USER", stage=final)
    assert users, "no USER in the runtime stage: it would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), user
    last_user = dockerfile.instructions.index(users[-1])
    entrypoint = dockerfile.all("ENTRYPOINT", stage=final)[-1]
    assert last_user < dockerfile.instructions.index(entrypoint)


def test_the_image_serves_both_ports_and_runs_syncline_up(dockerfile: Dockerfile) -> None:
    final = dockerfile.final_stage
    exposed = {
        port.split("/")[0] for e in dockerfile.all("EXPOSE", final) for port in e.args.split()
    }
    assert exposed == {"8000", "8001"}
    entrypoint = dockerfile.all("ENTRYPOINT", final)[-1].json_or_shell()
    command = dockerfile.all("CMD", final)[-1].json_or_shell()
    assert entrypoint + command == ["syncline", "up"]
    env = _env(dockerfile, final)
    assert env["SYNCLINE_HOST"] == "0.0.0.0", "127.0.0.1 is unreachable from outside a container"
    assert env["PATH"].startswith("/opt/venv/bin:")


def _env(dockerfile: Dockerfile, stage: int) -> dict[str, str]:
    env = {}
    for instruction in dockerfile.all("ENV", stage):
        for pair in shlex.split(instruction.args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_the_image_bakes_in_no_secret(dockerfile: Dockerfile) -> None:
    for instruction in dockerfile.all("ENV") + dockerfile.all("ARG"):
        for pair in shlex.split(instruction.args):
            key = pair.partition("=")[0]
            assert not SECRET_NAME.search(key), f"{instruction.keyword} {key} in the image"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore starts from an empty context"
    assert not any(p.startswith("!") and ".env" in p for p in patterns)


def test_everything_the_image_copies_is_in_the_build_context(dockerfile: Dockerfile) -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    for copy in dockerfile.all("COPY"):
        options, rest = _options(copy.args)
        if "from" in options:
            continue
        *sources, _ = rest.split()
        for source in sources:
            path = source.removeprefix("./").rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such file"
            assert path in allowed, f"COPY {source}: .dockerignore keeps it out of the context"


def test_the_image_health_check_asks_readyz(dockerfile: Dockerfile) -> None:
    (check,) = dockerfile.all("HEALTHCHECK")
    options, command = _options(check.args)
    assert command.startswith("CMD ")
    argv = Instruction("CMD", command[4:], check.stage).json_or_shell()
    assert argv[0] == "python" and "/readyz" in " ".join(argv)
    # Within the interval, and never longer than the orchestrator waits.
    assert _seconds(options["timeout"]) < _seconds(options["interval"])
    assert _seconds(options["start-period"]) >= 30, "migrations run before the node serves"


def healthcheck_argv(dockerfile: Dockerfile) -> list[str]:
    """The HEALTHCHECK command as this test process can run it."""
    (check,) = dockerfile.all("HEALTHCHECK")
    _, command = _options(check.args)
    argv = Instruction("CMD", command[4:], check.stage).json_or_shell()
    return [sys.executable, *argv[1:]]


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = json.dumps({"status": "ready" if self.status == 200 else "not ready"}).encode()
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def readyz_server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Readyz,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_healthcheck_here(argv: list[str], port: int, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the check's `python -c` code in this process (a subprocess costs half a second
    here): it passes if it returns, and fails as `python -c` would, with an exception."""
    assert argv[1] == "-c"
    monkeypatch.setenv("SYNCLINE_PORT", str(port))
    # `python -c` exits without closing the response; here it is collected at once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            exec(compile(argv[2], "<healthcheck>", "exec"), {})
        except Exception:
            return False
        finally:
            gc.collect()
    return True


def test_the_health_check_passes_on_200_only(
    dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = healthcheck_argv(dockerfile)
    with readyz_server(200) as port:
        assert run_healthcheck_here(argv, port, monkeypatch)
    with readyz_server(503) as port:
        assert not run_healthcheck_here(argv, port, monkeypatch)
    with readyz_server(200) as port:
        pass  # closed: nothing listens there now
    assert not run_healthcheck_here(argv, port, monkeypatch)


# -- nginx.conf ----------------------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def find(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive:
        (found,) = self.find(name)
        return found


_NGINX_TOKEN = re.compile(r"""\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'([^']*)'|([{};])|([^\s{};"']+)""")


def parse_nginx(text: str) -> Directive:
    """nginx's configuration as a tree of directives (enough of its grammar for ours)."""
    root = Directive("main", [], [])
    stack = [root]
    words: list[str] = []
    for match in _NGINX_TOKEN.finditer(text):
        double, single, punct, bare = match.groups()
        if punct is None and double is None and single is None and bare is None:
            continue  # whitespace or a comment
        if punct is None:
            words.append(next(w for w in (double, single, bare) if w is not None))
            continue
        block = stack[-1].block
        assert block is not None
        if punct == ";":
            block.append(Directive(words[0], words[1:]))
        elif punct == "{":
            child = Directive(words[0], words[1:], [])
            block.append(child)
            stack.append(child)
        else:
            assert not words, f"unterminated directive {words}"
            stack.pop()
        if punct != "}":
            words = []
    assert len(stack) == 1 and not words, "unbalanced braces in nginx.conf"
    return root


@pytest.fixture(scope="module")
def nginx() -> Directive:
    return parse_nginx(NGINX_CONF.read_text())


def node_ports(nodes: dict[str, dict[str, Any]]) -> tuple[int, int]:
    (env,) = {json.dumps(environment(node), sort_keys=True) for node in nodes.values()}
    values = json.loads(env)
    return int(values.get("SYNCLINE_PORT", 8000)), int(values.get("SYNCLINE_GATEWAY_PORT", 8001))


def _upstreams(http: Directive) -> dict[str, Directive]:
    return {u.args[0]: u for u in http.find("upstream")}


def _proxied_upstream(location: Directive) -> str:
    target = urlsplit(location.one("proxy_pass").args[0])
    assert target.scheme == "http"
    return str(target.hostname)


def _servers(upstream: Directive) -> set[str]:
    return {s.args[0] for s in upstream.find("server")}


def test_nginx_sends_the_websocket_path_to_every_gateway_with_the_upgrade_headers(
    nginx: Directive, nodes: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    http_port, gateway_port = node_ports(nodes)
    http = nginx.one("http")
    upstreams = _upstreams(http)
    (server,) = http.find("server")
    assert server.one("listen").args[0] == str(published_port(services["lb"])[1])
    locations = {tuple(loc.args): loc for loc in server.find("location")}
    websocket = locations[("=", WEBSOCKET_PATH)]
    gateway = upstreams[_proxied_upstream(websocket)]
    assert _servers(gateway) == {f"{name}:{gateway_port}" for name in nodes}
    assert websocket.one("proxy_http_version").args == ["1.1"]
    headers = {d.args[0].lower(): d.args[1] for d in websocket.find("proxy_set_header")}
    assert headers["upgrade"] == "$http_upgrade"
    (connection_map,) = [
        m for m in http.find("map") if m.args == ["$http_upgrade", "$connection_upgrade"]
    ]
    assert {d.name: d.args for d in connection_map.block or []} == {
        "default": ["upgrade"],
        "": ["close"],
    }
    assert headers["connection"] == "$connection_upgrade"
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert _seconds(websocket.one("proxy_read_timeout").args[0]) >= MAX_PING_INTERVAL_S
    # Everything else goes to every node's HTTP server.
    rest = locations[("/",)]
    assert _servers(upstreams[_proxied_upstream(rest)]) == {f"{name}:{http_port}" for name in nodes}
    rest_headers = {d.args[0].lower(): d.args[1] for d in rest.find("proxy_set_header")}
    assert rest_headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert rest_headers["host"] == "$http_host", "keep the port: redirects point back here"


def test_nginx_follows_the_nodes_through_dockers_dns(nginx: Directive) -> None:
    for upstream in nginx.one("http").find("upstream"):
        assert upstream.find("zone"), "resolve needs the upstream in shared memory"
        assert upstream.one("resolver").args[0] == "127.0.0.11"
        for server in upstream.find("server"):
            assert "resolve" in server.args, server.args


def test_nginx_limits_connections_per_client_address(nginx: Directive) -> None:
    """The nodes see the balancer's address on the gateway, so it limits per client."""
    http = nginx.one("http")
    websocket = next(
        loc for loc in http.one("server").find("location") if loc.args == ["=", WEBSOCKET_PATH]
    )
    assert "$binary_remote_addr" in {d.args[0] for d in http.find("limit_conn_zone")}
    assert "$binary_remote_addr" in {d.args[0] for d in http.find("limit_req_zone")}
    assert websocket.find("limit_conn") and websocket.find("limit_req")


# -- haproxy.cfg ---------------------------------------------------------------------------------


def parse_haproxy(text: str) -> dict[str, list[list[str]]]:
    """Sections ("global", "frontend public", ...) and their lines, each split into words."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
            continue
        assert current is not None, f"a line outside any section: {raw}"
        current.append(shlex.split(line))
    return sections


@pytest.fixture(scope="module")
def haproxy() -> dict[str, list[list[str]]]:
    return parse_haproxy(HAPROXY_CFG.read_text())


def _lines(section: list[list[str]], *start: str) -> list[list[str]]:
    return [line for line in section if tuple(line[: len(start)]) == start]


def test_haproxy_backends_list_every_node(
    haproxy: dict[str, list[list[str]]],
    nodes: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> None:
    http_port, gateway_port = node_ports(nodes)
    frontend = haproxy["frontend public"]
    assert _lines(frontend, "bind") == [["bind", f":{published_port(services['lb'])[1]}"]]
    assert _lines(frontend, "option", "forwardfor")
    assert ["acl", "websocket", "path", WEBSOCKET_PATH] in frontend
    assert ["use_backend", "syncline_gateway", "if", "websocket"] in frontend
    assert ["default_backend", "syncline_http"] in frontend
    http_servers = {line[1]: line[2] for line in _lines(haproxy["backend syncline_http"], "server")}
    assert http_servers == {name: f"{name}:{http_port}" for name in nodes}
    gateway = _lines(haproxy["backend syncline_gateway"], "server")
    assert {line[1]: line[2] for line in gateway} == {
        name: f"{name}:{gateway_port}" for name in nodes
    }
    for line in gateway:  # a gateway is as healthy as its node's /readyz
        assert line[3:] == ["track", f"syncline_http/{line[1]}"]


def test_haproxy_health_checks_readyz_and_keeps_websockets_open(
    haproxy: dict[str, list[list[str]]],
) -> None:
    backend = haproxy["backend syncline_http"]
    assert ["option", "httpchk"] in backend
    assert ["http-check", "send", "meth", "GET", "uri", "/readyz"] in backend
    assert ["http-check", "expect", "status", "200"] in backend
    (default_server,) = _lines(backend, "default-server")
    assert "check" in default_server
    assert "resolvers" in default_server and "none" in default_server[-1]
    (tunnel,) = _lines(haproxy["defaults"], "timeout", "tunnel")
    assert _seconds(tunnel[2]) >= MAX_PING_INTERVAL_S
    assert ["nameserver", "dns", "127.0.0.11:53"] in haproxy["resolvers docker"]


# -- with real services ----------------------------------------------------------------------------


def test_nodes_starting_together_migrate_one_after_the_other(fresh_database_url: str) -> None:
    """What compose.yaml relies on when every node starts at once: `syncline up` migrates
    under an advisory lock, so the second waits and then finds the schema at head."""
    lock = "SELECT pg_advisory_lock(hashtext('syncline.migrate'))"
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with psycopg.connect(fresh_database_url, autocommit=True) as holder:
        holder.execute(lock)
        with ThreadPoolExecutor(2) as pool:
            nodes = [pool.submit(upgrade_in_child, fresh_database_url) for _ in range(2)]
            deadline = time.monotonic() + 60
            try:
                while (row := holder.execute(waiting).fetchone()) is not None and row[0] < 2:
                    assert time.monotonic() < deadline, "the migrations never waited for the lock"
                    assert not any(n.done() for n in nodes), [n.exception() for n in nodes]
                    time.sleep(0.05)
            finally:
                # Both wait on the lock (or the test failed): let them race for it.
                holder.execute("SELECT pg_advisory_unlock(hashtext('syncline.migrate'))")
            for node in nodes:
                node.result(timeout=60)
    assert migrate.current_revision(fresh_database_url) == migrate.head_revision()


@pytest.mark.redis
async def test_the_health_check_passes_on_the_capture_leader_and_on_a_standby(
    schema_url: str, redis_url: str, dockerfile: Dockerfile
) -> None:
    """Both nodes of compose.yaml must turn healthy, or the balancer never starts: one of
    them captures, the other stands by."""
    suffix = f"{time.monotonic_ns():x}"[-8:]
    shared: dict[str, Any] = {
        "engine": f"{redis_url}?prefix=d{suffix}",
        "slot_name": f"d_{suffix}",
        "publication_name": f"d_{suffix}",
    }
    leader = await start_live_server(schema_url, **shared)
    standby = await start_live_server(schema_url, wait_for_capture=False, **shared)
    argv = healthcheck_argv(dockerfile)
    try:
        for node in (leader, standby):
            port = urlsplit(node.http_url).port
            assert port is not None
            # A loaded CI machine can time out a readiness check now and then: retry.
            deadline = time.monotonic() + 45
            while True:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    env={"SYNCLINE_PORT": str(port), "PATH": "/usr/bin:/bin"},
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                if await process.wait() == 0:
                    break
                assert time.monotonic() < deadline, f"{node.http_url} never turned healthy"
                await asyncio.sleep(0.2)
        assert leader.runtime.capture is not None and standby.runtime.capture is not None
        assert leader.runtime.capture.ready.is_set()
        assert not standby.runtime.capture.ready.is_set(), "the second node captures too"
    finally:
        await stop_live_server(standby)
        await stop_live_server(leader)
