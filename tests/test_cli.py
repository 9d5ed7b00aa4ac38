"""The `syncline` command as a user runs it: a real process, real PostgreSQL, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from syncline.db.embedded import free_port

SYNCLINE = [sys.executable, "-m", "syncline"]
READY_WITHIN_S = 10.0
# A first start runs initdb: seconds on a quiet machine, many more on a busy one.
FIRST_START_WITHIN_S = 60.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    if args[:1] == ("up",):  # a `syncline up` the developer runs holds the default ports
        assert "--port" in args and "--gateway-port" in args, "give `up` free ports"
    return subprocess.run(
        [*SYNCLINE, *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_ports() -> tuple[str, ...]:
    """`--port` and `--gateway-port` options with free ports."""
    return ("--port", str(free_port()), "--gateway-port", str(free_port()))


class Up:
    """A `syncline up` child process and its HTTP port."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*SYNCLINE, "up", "--port", str(self.port), "--gateway-port", str(free_port()), *args],
            cwd=cwd,
            env=_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, within: float = FIRST_START_WITHIN_S) -> float:
        started = time.monotonic()
        while time.monotonic() - started < within:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"syncline up exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready within {within} s")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_help_lists_every_command(workdir: Path) -> None:
    result = run_cli("--help", cwd=workdir)
    assert result.returncode == 0
    for command in ("up", "migrate", "config", "psql"):
        assert command in result.stdout


def test_up_serves_ready_then_stops_cleanly_and_restarts_fast(workdir: Path) -> None:
    first = Up(workdir)
    try:
        first.wait_ready()
        health = httpx.get(f"{first.url}/healthz").json()
        assert health["status"] == "ok"
        metrics_text = httpx.get(f"{first.url}/metrics").text
        assert "syncline_build_info" in metrics_text
        assert 'syncline_http_requests_total{method="GET",route="/healthz",status="200"}' in (
            metrics_text
        )
        info = httpx.get(f"{first.url}/api/info").json()
        assert info["websocket_url"].endswith("/connection/websocket")
        assert httpx.get(f"{first.url}/docs").status_code == 200
    finally:
        code, out, err = first.stop(signal.SIGINT)
    assert code == 0, err
    assert "Syncline" in out and "/docs" in out and "syncline psql" in out
    assert "Traceback" not in err
    # The embedded server was stopped cleanly, not left behind.
    assert not (workdir / ".syncline" / "pg" / "postmaster.pid").exists()

    second = Up(workdir)
    try:
        assert second.wait_ready(READY_WITHIN_S) < READY_WITHIN_S
    finally:
        code, _, err = second.stop()
    assert code == 0, err


def test_port_in_use_is_one_line_and_nonzero(workdir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("up", "--port", str(port), "--gateway-port", str(free_port()), cwd=workdir)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started or created for a run that could not listen.
    assert not (workdir / ".syncline" / "pg").exists()


def test_malformed_config_is_one_line_and_nonzero(workdir: Path) -> None:
    (workdir / "syncline.toml").write_text("port = \n")
    result = run_cli("up", *free_ports(), cwd=workdir)
    assert result.returncode == 2
    assert "syncline.toml is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_line_and_nonzero(workdir: Path) -> None:
    url = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/nothing"
    result = run_cli(
        "up", *free_ports(), cwd=workdir, DATABASE_URL=url, SYNCLINE_JWT_SECRET="s" * 40
    )
    assert result.returncode == 1
    assert "cannot reach PostgreSQL at postgresql://nobody:***@" in result.stderr
    assert "pw@" not in result.stderr
    assert "Traceback" not in result.stderr


def test_external_database_without_key_is_refused(workdir: Path, database_url: str) -> None:
    result = run_cli("up", *free_ports(), cwd=workdir, DATABASE_URL=database_url)
    assert result.returncode != 0
    assert "SYNCLINE_JWT_SECRET is required" in result.stderr


def test_a_short_key_is_one_line_refusal_unless_the_development_mode_is_on(
    workdir: Path, database_url: str
) -> None:
    refused = run_cli(
        "up", *free_ports(), cwd=workdir, DATABASE_URL=database_url, SYNCLINE_JWT_SECRET="secret"
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "jwt_secret" in refused.stderr and "insecure_short_keys = true" in refused.stderr
    up = Up(
        workdir,
        DATABASE_URL=database_url,
        SYNCLINE_JWT_SECRET="secret",
        SYNCLINE_INSECURE_SHORT_KEYS="true",
    )
    try:
        up.wait_ready()
    finally:
        code, out, err = up.stop()
    assert code == 0, err
    # Loud: in the banner the user reads, and in the log.
    assert "INSECURE: jwt_secret is 6 bytes" in out
    assert "INSECURE: insecure_short_keys = true is for development only" in err


def test_up_with_database_url_starts_no_postgres(workdir: Path, database_url: str) -> None:
    up = Up(workdir, DATABASE_URL=database_url, SYNCLINE_JWT_SECRET="s" * 40)
    try:
        up.wait_ready()
    finally:
        code, _, err = up.stop()
    assert code == 0, err
    assert not (workdir / ".syncline").exists()


def test_migrate_and_its_sql(workdir: Path, fresh_database_url: str) -> None:
    result = run_cli("migrate", cwd=workdir, DATABASE_URL=fresh_database_url)
    assert result.returncode == 0, result.stderr
    assert "migrated from empty to" in result.stdout
    again = run_cli("migrate", cwd=workdir, DATABASE_URL=fresh_database_url)
    assert "up to date" in again.stdout
    sql = run_cli("migrate", "--sql", cwd=workdir)
    assert "CREATE SCHEMA IF NOT EXISTS syncline" in sql.stdout
    assert "CREATE TABLE syncline.changes" in sql.stdout


def test_config_masks_secrets(workdir: Path) -> None:
    secret = "topsecret" * 5
    result = run_cli(
        "config",
        cwd=workdir,
        SYNCLINE_JWT_SECRET=secret,
        DATABASE_URL="postgresql://app:hunter2@db.internal/app",
    )
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout and "hunter2" not in result.stdout
    assert 'database_url = "postgresql://app:***@db.internal/app"' in result.stdout


def test_a_second_up_on_the_same_data_dir_is_refused(workdir: Path) -> None:
    first = Up(workdir)
    try:
        first.wait_ready()
        result = run_cli("up", *free_ports(), cwd=workdir)
        assert result.returncode != 0
        assert "already running with data dir" in result.stderr
    finally:
        first.stop()


CENTRIFUGO_NAMESPACES = """
[[namespaces]]
name = "chat"
history_size = 100
history_ttl = "300s"
force_recovery = true
presence = true
join_leave = true
force_push_join_leave = true
allow_subscribe_for_client = true
allow_history_for_subscriber = true
allow_presence_for_subscriber = true

[[namespaces]]
name = "personal"
allow_user_limited_channels = true
history_meta_ttl = "720h"
"""


def test_config_shows_every_option_of_each_namespace_in_force(workdir: Path) -> None:
    (workdir / "syncline.toml").write_text(CENTRIFUGO_NAMESPACES)
    as_json = run_cli("config", "--namespaces", "--json", cwd=workdir)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    chat, personal = data["namespaces"]["chat"], data["namespaces"]["personal"]
    assert chat == {
        "history_size": 100,
        "history_ttl": 300,
        "recover": True,
        "presence": True,
        "join_leave": True,
        "subscribe": "authenticated",
        "membership_query": None,
        "channel_pattern": None,
        "allow_publish": False,
        "client_publish_history": False,
        "allow_history": True,
        "allow_presence": True,
        "allow_user_limited_channels": False,
        "allowed_delta_types": [],
        "max_channel_length": 255,
        "source": "syncline.toml",
    }
    # Centrifugo's defaults for what its layout does not say: a token to subscribe.
    assert (personal["subscribe"], personal["allow_user_limited_channels"]) == ("token", True)
    assert data["namespaces"]["default"]["source"] == "built in"
    assert data["notes"] == [
        "[namespaces[1] (personal)] history_meta_ttl is ignored: the engine keeps a channel's"
        " epoch and offset for its own time (the process's life in memory, 24 h past the last"
        " publication in Redis)"
    ]
    table = run_cli("config", "--namespaces", cwd=workdir, COLUMNS="220")
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "option" in line)
    columns = [cell.strip() for cell in header.split("┃") if cell.strip()]
    assert columns == ["option", "default", "room", "user", "typing", "shape", "chat", "personal"]
    row = next(line for line in table.stdout.splitlines() if "allow_user_limited_channels" in line)
    assert row.split("│")[-2].strip() == "yes"  # the last column: personal
    assert "note: [namespaces[1] (personal)] history_meta_ttl is ignored" in table.stdout


def test_a_centrifugo_option_that_differs_is_a_one_line_error(workdir: Path) -> None:
    (workdir / "syncline.toml").write_text(
        '[[namespaces]]\nname = "chat"\nallow_subscribe_for_client = true\n'
        'force_recovery_mode = "cache"\n'
    )
    result = run_cli("config", "--namespaces", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert (
        "[namespaces[0] (chat)] force_recovery_mode: Centrifugo's option is not supported by"
        " Syncline: only the stream recovery mode exists" in result.stderr
    )
