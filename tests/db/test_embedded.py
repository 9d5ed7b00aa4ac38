"""The embedded PostgreSQL: first start, reuse, and the data-dir problems users hit."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psycopg
import pytest

from syncline.db.embedded import EmbeddedPostgres, ServerInfo, free_port
from syncline.errors import SynclineError


def test_running_server_has_logical_wal_and_tcp(pg_server: ServerInfo) -> None:
    with psycopg.connect(pg_server.url()) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
        version = conn.execute("SHOW server_version_num").fetchone()
        assert conn.info.host == "127.0.0.1"
    assert row == ("logical",)
    assert version is not None and int(version[0]) // 10000 == 18


def test_password_is_required(pg_server: ServerInfo) -> None:
    wrong = ServerInfo(pg_server.host, pg_server.port, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong.url(), connect_timeout=5)


def test_restart_reuses_the_data_and_port(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data")
    first = server.start()
    with psycopg.connect(first.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    assert not server.is_running()
    again = EmbeddedPostgres(tmp_path / "data").start()
    try:
        assert (again.port, again.password) == (first.port, first.password)
        with psycopg.connect(again.url()) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    finally:
        EmbeddedPostgres(tmp_path / "data").stop()


def test_data_dir_of_another_major_version_is_refused(tmp_path: Path) -> None:
    pgdata = tmp_path / "data" / "pg"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("19\n")
    with pytest.raises(SynclineError, match=r"newer PostgreSQL major version \(19\)"):
        EmbeddedPostgres(tmp_path / "data").start()


def test_unwritable_data_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SynclineError, match=r"is not writable"):
        EmbeddedPostgres(blocker / "data").start()


def test_the_cluster_never_belongs_to_root(pg_server: ServerInfo) -> None:
    with psycopg.connect(pg_server.url()) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    owner = Path(row[0]).stat().st_uid
    # PostgreSQL refuses to run as root; as root we hand the cluster to a system user.
    assert owner == (os.geteuid() or owner) and owner != 0


def test_start_after_the_postmaster_was_killed_runs_crash_recovery(tmp_path: Path) -> None:
    """kill -9 leaves postmaster.pid, maybe a zombie and children: start() clears them."""
    server = EmbeddedPostgres(tmp_path / "data")
    info = server.start()
    with psycopg.connect(info.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
        pid = int((server.pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):  # SIGKILL is not instant
            time.sleep(0.01)
    assert (server.pgdata / "postmaster.pid").exists()
    try:
        again = server.start()
        assert again.port == info.port
        with psycopg.connect(again.url()) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (7,)
    finally:
        server.stop(mode="immediate")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    """Outgoing connections take their source ports from the ephemeral range: a port chosen
    there can be gone before the server binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    assert len(ports) > 1  # chosen at random, not a fixed port
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
