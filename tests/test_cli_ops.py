"""`syncline sync add/list`, `tail` and `doctor` against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from typer.testing import CliRunner, Result

from syncline.cli import app
from syncline.cli.sync import rule_toml, toml_string
from syncline.cli.tail import when

from helpers.live_server import TEST_SECRET, LiveServer

runner = CliRunner()
EXISTING = (
    '# my settings\nlog_level = "warning"\n\n[namespaces.team]\nsubscribe = "authenticated"\n'
)


@pytest.fixture
def workdir(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    clean_env.chdir(tmp_path)
    return tmp_path


def invoke(*args: str, url: str | None = None) -> Result:
    env = {"SYNCLINE_JWT_SECRET": TEST_SECRET, "COLUMNS": "200"}
    if url is not None:
        env["DATABASE_URL"] = url
    return runner.invoke(app, list(args), env=env)


def test_toml_strings_round_trip() -> None:
    tricky = 'a "quoted" \\ back\nslash\ttab \x01 é 😀'
    body = {"table": "t", "channel": tricky, "columns": ["a", tricky]}
    assert tomllib.loads(rule_toml(body))["rules"][0] == body
    assert toml_string("x") == '"x"'


def stored_rules(url: str) -> list[object]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT body FROM syncline.sync_rules ORDER BY id")]


def test_sync_add_with_the_database_up_stores_the_rule_there(
    workdir: Path, schema_url: str
) -> None:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tasks (id serial PRIMARY KEY, team_id int)")
    (workdir / "syncline.toml").write_text(EXISTING)
    result = invoke(
        "sync", "add", "tasks", "--channel", "team:{team_id}", "--columns", "id,team_id",
        "--ops", "insert,update,delete", url=schema_url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # The database is every node's record; the node's own file is left alone.
    assert (workdir / "syncline.toml").read_text() == EXISTING
    assert stored_rules(schema_url) == [
        {
            "table": "tasks",
            "channel": "team:{team_id}",
            "columns": ["id", "team_id"],
            "ops": ["insert", "update", "delete"],
        }
    ]
    assert "to the database (syncline.sync_rules id" in result.output
    assert "no running capture read it yet" in result.output
    assert result.stderr == ""  # the setup is reported once, not again as log lines
    with psycopg.connect(schema_url) as conn:
        members = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables"
            " WHERE pubname = 'syncline'"
        ).fetchall()
        ident = conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'tasks'").fetchone()
    assert {"public.tasks", "syncline.sync_rules"} <= {m[0] for m in members}
    assert ident == ("f",)  # team_id is not in the key: deletes need the full old row


def test_sync_add_without_a_database_appends_to_syncline_toml(workdir: Path) -> None:
    (workdir / "syncline.toml").write_text(EXISTING)
    result = invoke("sync", "add", "tasks", "--channel", "team:{team_id}", "--columns", "id")
    assert result.exit_code == 0, result.output
    text = (workdir / "syncline.toml").read_text()
    assert text.startswith(EXISTING)
    assert tomllib.loads(text)["rules"] == [
        {"table": "tasks", "channel": "team:{team_id}", "columns": ["id"]}
    ]
    assert "`syncline up` sets the table up when it starts" in result.output


def test_sync_add_trigger_mode_installs_triggers(
    workdir: Path, schema_url: str, clean_env: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text)")
    clean_env.setenv("SYNCLINE_CAPTURE", "trigger")
    result = invoke("sync", "add", "public.notes", "--channel", "notes", url=schema_url)
    assert result.exit_code == 0, result.output
    rule = {"table": "public.notes", "channel": "notes", "columns": "*"}
    assert stored_rules(schema_url) == [rule]
    with psycopg.connect(schema_url) as conn:
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'syncline_capture'"
        ).fetchall()
    assert {"notes", "syncline.sync_rules"} <= {t[0] for t in triggers}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bad table!", "--channel", "x"], "schema.table"),
        (["tasks", "--channel", "x", "--columns", "id,password"], "deny-list"),
        (["tasks", "--channel", "x", "--ops", "insert,explode"], "ops"),
        (["tasks", "--channel", "nowhere:{id}"], "namespace"),
        (["orders", "--channel", "orders", "--columns", ",".join(
            ["id", "customer_name", "product_name", "status", "created_at", "updated_at"]
        )], "twice"),
    ],
)  # fmt: skip
def test_sync_add_rejects_bad_rules(workdir: Path, args: list[str], needle: str) -> None:
    (workdir / "syncline.toml").write_text(EXISTING)
    result = invoke("sync", "add", *args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and needle in lines[0]
    assert "Traceback" not in result.output
    assert (workdir / "syncline.toml").read_text() == EXISTING


def test_sync_add_refuses_a_file_with_inline_rules(workdir: Path) -> None:
    original = 'rules = [{table = "a", channel = "a", columns = "*"}]\n'
    (workdir / "syncline.toml").write_text(original)
    result = invoke("sync", "add", "b", "--channel", "b")
    assert result.exit_code != 0
    assert "cannot append" in result.stderr
    assert (workdir / "syncline.toml").read_text() == original


def test_sync_list_shows_defaults_and_added_rule(workdir: Path, schema_url: str) -> None:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tasks (id serial PRIMARY KEY, team_id int)")
    added = invoke("sync", "add", "tasks", "--channel", "tasks", "--columns", "id", url=schema_url)
    assert added.exit_code == 0, added.output
    result = invoke("sync", "list", "--json", url=schema_url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["capture"].startswith("logical")
    by_table = {(r["table"], r["channel"]): r for r in data["rules"]}
    assert by_table["public.orders", "orders"]["source"] == "default"
    assert by_table["public.room_members", "user:{user_id}"]["exists"] is True
    tasks = by_table["public.tasks", "tasks"]
    assert tasks["source"] == "database"
    assert tasks["columns"] == ["id"]
    assert tasks["in_publication"] is True
    table = invoke("sync", "list", url=schema_url)
    assert table.exit_code == 0, table.output
    assert "public.tasks" in table.stdout and "in publication" in table.stdout


def test_sync_list_without_database(workdir: Path) -> None:
    result = invoke("sync", "list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["capture"] is None
    assert len(data["rules"]) == 4


def test_doctor_healthy(workdir: Path, schema_url: str) -> None:
    result = invoke("doctor", url=schema_url)
    assert result.exit_code == 0, result.output
    assert "wal_level is logical" in result.stdout
    assert "migrations at head" in result.stdout
    assert "capture mode: logical" in result.stdout
    assert "healthy" in result.stdout


def test_doctor_reports_outbox_backlog(workdir: Path, schema_url: str) -> None:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE TRIGGER syncline_capture AFTER INSERT ON orders"
                     " FOR EACH ROW EXECUTE FUNCTION syncline.capture_row()")  # fmt: skip
        conn.execute(
            "INSERT INTO orders (customer_name, product_name) VALUES ('a', 'b'), ('c', 'd')"
        )
        conn.execute("DROP TRIGGER syncline_capture ON orders")
    try:
        result = invoke("doctor", url=schema_url)
    finally:
        with psycopg.connect(schema_url, autocommit=True) as conn:
            conn.execute("DELETE FROM syncline.changes")
    assert result.exit_code == 1, result.output
    assert "outbox backlog: 2 change(s)" in result.stdout
    assert "fix: start Syncline" in result.stdout


def test_doctor_reports_migrations_behind(workdir: Path, fresh_database_url: str) -> None:
    result = invoke("doctor", url=fresh_database_url)
    assert result.exit_code == 1, result.output
    assert "fix: syncline migrate" in result.stdout


def test_doctor_embedded_not_running(workdir: Path) -> None:
    result = invoke("doctor")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "not running" in result.stderr


def test_tail_unreachable_server(workdir: Path) -> None:
    env = {"SYNCLINE_HOST": "127.0.0.1", "SYNCLINE_PORT": "1"}
    result = runner.invoke(app, ["tail"], env={**env, "SYNCLINE_JWT_SECRET": TEST_SECRET})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach Syncline")
    assert result.stderr.strip().count("\n") == 0


async def start_tail(workdir: Path, server: LiveServer, *args: str) -> asyncio.subprocess.Process:
    """`syncline tail ARGS` against the live server, in a process of its own."""
    port = str(urlsplit(server.http_url).port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
    env.pop("DATABASE_URL", None)
    env.update(SYNCLINE_JWT_SECRET=TEST_SECRET, SYNCLINE_HOST="127.0.0.1", SYNCLINE_PORT=port)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "syncline", "tail", *args,
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stop_tail(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_tail_prints_inserts_as_json(workdir: Path, live_server: LiveServer) -> None:
    proc = await start_tail(workdir, live_server, "orders", "--json", "--table", "orders")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert b"tailing orders" in ready, ready + await proc.stderr.read()
        await live_server.sql(
            "INSERT INTO orders (customer_name, product_name) VALUES ('Ada', 'lamp')"
        )
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        event = json.loads(line)
        assert event["channel"] == "orders"
        assert event["data"]["op"] == "insert"
        assert event["data"]["row"]["customer_name"] == "Ada"
        proc.send_signal(signal.SIGINT)  # Ctrl+C: a clean exit (0.2 s measured; a busy
        assert await asyncio.wait_for(proc.wait(), 5) == 0  # machine takes longer)
    finally:
        await stop_tail(proc)


async def test_tail_shows_personal_channels(workdir: Path, live_server: LiveServer) -> None:
    as_operator = await start_tail(workdir, live_server, "user:7", "--json")
    as_the_user = await start_tail(workdir, live_server, "user:7", "--json", "--user", "7")
    tails = [as_operator, as_the_user]
    try:
        for proc in tails:
            assert proc.stderr is not None
            ready = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert b"tailing user:7" in ready, ready + await proc.stderr.read()
            if proc is as_the_user:
                assert b"server-side subscription of user 7" in ready
        await live_server.sql("""SELECT syncline.publish('user:7', '{"type": "job_done"}')""")
        for proc in tails:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert json.loads(line)["data"] == {"type": "job_done"}
    finally:
        for proc in tails:
            await stop_tail(proc)


def test_tail_times_have_milliseconds() -> None:
    assert when({"commit_time": "2026-11-23T19:04:04.123456Z"}) == "2026-11-23 19:04:04.123"
    assert when({"commit_time": "2026-11-23T20:04:04+01:00"}) == "2026-11-23 19:04:04.000"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", when({}))


def test_doctor_checks_the_rules_in_the_database_too(workdir: Path, schema_url: str) -> None:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO syncline.sync_rules (body)"
            """ VALUES ('{"table": "ghosts", "channel": "ghosts", "columns": "*"}')"""
        )
    result = invoke("doctor", url=schema_url)
    assert "warn rule table public.ghosts does not exist" in result.stdout, result.output
