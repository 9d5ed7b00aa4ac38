"""Shared fixtures: a real embedded PostgreSQL per test process, a fresh database per module,
and a real redis-server on a free port for the tests that ask for one."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import structlog

from syncline.db import migrate
from syncline.db.embedded import EmbeddedPostgres, ServerInfo, free_port
from syncline.engine.memory import MemoryEngine

from helpers.capture_harness import MODES, Capture, Received
from helpers.live_server import LiveServer, drop_slot, start_live_server, stop_live_server


@pytest.fixture(scope="session", autouse=True)
def hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests run in an empty directory with no SYNCLINE_* or DATABASE_URL of the caller's: a
    syncline.toml or a .syncline data dir in the checkout (`syncline sync add`, `syncline up`)
    must not reach the servers and commands the tests start."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("SYNCLINE_") or key == "DATABASE_URL":
                patch.delenv(key)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(autouse=True)
def isolated_log_config() -> Iterator[None]:
    """A test that configures logging (a CLI command at --log-level warning) leaves it as it
    found it: otherwise a later test in the same process could not capture info events."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerInfo]:
    """PostgreSQL 18 from the embedded wheel, wal_level=logical, for this test process.

    Not under pytest's tmp dir: every pytest run re-chmods /tmp/pytest-of-<user> to 0700,
    which would cut the server's system user off from its own data while it runs.
    """
    base = Path(tempfile.mkdtemp(prefix="syncline-test-pg-"))
    server = EmbeddedPostgres(base / "data")
    info = server.start()
    try:
        yield info
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def create_database(info: ServerInfo, name: str) -> str:
    with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return info.url(name)


def drop_database(info: ServerInfo, name: str) -> None:
    with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
        # Replication slots pin a database; a test module may leave one behind on failure.
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = %s AND NOT active",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(pg_server: ServerInfo) -> Iterator[str]:
    """A fresh, empty database for one test module, dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    url = create_database(pg_server, name)
    try:
        yield url
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def fresh_database_url(pg_server: ServerInfo) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    url = create_database(pg_server, name)
    try:
        yield url
    finally:
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
def migrated_url(database_url: str) -> str:
    """A fresh database with Syncline's migrations applied."""
    migrate.upgrade(database_url)
    return database_url


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port, started and stopped by the tests."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the README's test command")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


APP_SCHEMA = """
ALTER TABLE orders ADD COLUMN IF NOT EXISTS secret_note text;
"""
# Tests write messages and memberships for small ids directly with SQL: these users and rooms
# exist so that the chat tables' foreign keys hold; the sequences start above them.
SEED_USERS_AND_ROOMS = """
INSERT INTO users (id, username, email, password_hash)
SELECT g, 'seed' || g, 'seed' || g || '@example.test', 'x' FROM generate_series(1, 100) g
ON CONFLICT DO NOTHING;
INSERT INTO rooms (id, kind, name)
SELECT g, 'group', 'room ' || g FROM generate_series(2, 100) g
ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('users', 'id'), greatest(1000, max(id))) FROM users;
SELECT setval(pg_get_serial_sequence('rooms', 'id'), greatest(1000, max(id))) FROM rooms;
"""


@pytest.fixture
def app_schema() -> str:
    """DDL the tests add to the migrated chat and orders tables."""
    return APP_SCHEMA


@pytest.fixture
def schema_url(migrated_url: str) -> str:
    """The module's migrated database with the sync-rule tables, emptied for each test."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(APP_SCHEMA)
        conn.execute("TRUNCATE orders, messages, room_members RESTART IDENTITY")
        conn.execute(SEED_USERS_AND_ROOMS)
        conn.execute("DELETE FROM syncline.changes")
        conn.execute("DELETE FROM syncline.sync_rules")  # rules a test added at runtime
    return migrated_url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SYNCLINE_* or DATABASE_URL from the caller's environment leaks into a test."""
    for key in list(os.environ):
        if key.startswith("SYNCLINE_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
async def live_server(schema_url: str) -> AsyncIterator[LiveServer]:
    """Syncline on free ports over this module's database, stopped after the test."""
    server = await start_live_server(schema_url)
    try:
        yield server
    finally:
        await stop_live_server(server)


@pytest.fixture(params=MODES)
async def capture(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[Capture]:
    """One capture source per parameter (logical, trigger, poll) running into a MemoryEngine."""
    received = Received()
    engine = MemoryEngine()
    engine.subscribe_fanout(received)
    cap = Capture(schema_url, request.param, engine, received)
    await cap.start()
    try:
        yield cap
    finally:
        await cap.stop()
        await engine.close()
        await drop_slot(schema_url, cap.slot)
