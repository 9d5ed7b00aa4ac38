"""Operator commands: `sync add` and `sync list` for rules, `tail` a channel live, `doctor`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jwt
import psycopg
import typer
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syncline.apps.sync import app_rules
from syncline.capture import setup
from syncline.capture.choose import ServerCapabilities, capabilities, choose
from syncline.capture.service import CAPTURE_APPLICATION_PREFIX, LEADER_LOCK_KEY
from syncline.cli import _guarded, _settings
from syncline.core import wire
from syncline.core.changes import Op
from syncline.core.namespaces import describe_errors
from syncline.core.protocol import Method
from syncline.core.rules import (
    ALL_COLUMNS,
    ReplicaIdentity,
    Rule,
    required_replica_identity,
)
from syncline.db.embedded import EmbeddedPostgres, ServerInfo
from syncline.errors import ConfigError, SynclineError
from syncline.keys import JWT_KEY_FILE, jwt_secret
from syncline.settings import DEFAULT_CONFIG_FILE, Settings, mask_url
from syncline.sync_config import SyncConfig, build_sync_config

sync_app: typer.Typer = typer.Typer(
    name="sync", help="Show and add sync rules (syncline.toml).", no_args_is_help=True
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="syncline.toml to use", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
OP_ORDER = [Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE]
# An inactive slot retaining more WAL than this is a problem, not a pause.
SLOT_RETAINED_LIMIT = 64 * 1024 * 1024
OUTBOX_BACKLOG_LIMIT = 10_000
_REPLIDENT = {"d": "default", "f": "full", "n": "nothing", "i": "index"}


# -- shared helpers ---------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _running_url(settings: Settings) -> str | None:
    """The database of a running Syncline, without starting anything; None: nothing running.

    In embedded mode the data dir remembers the port and password of the running server
    (the data dir lock is held by `syncline up`, so its server can't be started here).
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if not EmbeddedPostgres(settings.data_dir).is_running():
        return None
    try:
        password = (settings.data_dir / "postgres.password").read_text().strip()
        port = int((settings.data_dir / "postgres.port").read_text().strip())
    except (OSError, ValueError):
        return None
    return ServerInfo("127.0.0.1", port, password).url()


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        raise SynclineError(
            f"cannot reach PostgreSQL at {mask_url(url)}: {_reason(error)}"
        ) from None


def _sync_config(settings: Settings, extra: Mapping[str, Any] | None = None) -> SyncConfig:
    if extra is None:
        return build_sync_config(settings)
    return build_sync_config(settings.model_copy(update={"rules": [*settings.rules, extra]}))


def _ops_text(ops: frozenset[Op]) -> str:
    return ",".join(op.value for op in OP_ORDER if op in ops)


def _columns_text(rule: Rule) -> str:
    return ALL_COLUMNS if rule.columns == ALL_COLUMNS else ",".join(rule.columns)


# -- sync add ---------------------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    parts = ['"']
    for char in value:
        if char in ('"', "\\"):
            parts.append("\\" + char)
        elif char < " " or char == "\x7f":
            parts.append(f"\\u{ord(char):04X}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def rule_toml(body: Mapping[str, Any]) -> str:
    """One ``[[rules]]`` table for a rule body of strings and lists of strings."""
    lines = ["[[rules]]"]
    for key, value in body.items():
        if isinstance(value, str):
            lines.append(f"{key} = {toml_string(value)}")
        else:
            lines.append(f"{key} = [{', '.join(toml_string(v) for v in value)}]")
    return "\n".join(lines) + "\n"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _rule_body(
    table: str, channel: str, columns: str, ops: str | None, truncate_channel: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"table": table, "channel": channel}
    body["columns"] = ALL_COLUMNS if columns.strip() == ALL_COLUMNS else _split(columns)
    if ops is not None:
        body["ops"] = [op.lower() for op in _split(ops)]
    if truncate_channel is not None:
        body["truncate_channel"] = truncate_channel
    try:
        Rule.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(describe_errors("rule", error, Rule))
        raise ConfigError(f"invalid rule: {problems}") from None
    return body


def _append_rule(path: Path, body: Mapping[str, Any]) -> None:
    """Append the rule to the file as text; refuse if the result would not parse."""
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    addition = "\n" if existing and not existing.endswith("\n") else ""
    addition += ("\n" if existing.strip() else "") + rule_toml(body)
    try:
        parsed = tomllib.loads(existing + addition)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"cannot append a [[rules]] table to {path}: {error}") from None
    if not parsed.get("rules") or parsed["rules"][-1] != body:
        raise ConfigError(f"cannot append a [[rules]] table to {path}: it defines rules otherwise")
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(addition)
        with path.open("rb") as handle:
            tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:  # someone else wrote to it meanwhile
        raise ConfigError(f"{path} is no longer valid TOML: {error}") from None


async def _apply(url: str, settings: Settings, config: SyncConfig) -> tuple[str, setup.SetupReport]:
    conn = await _connect(url)
    async with conn:
        caps = await capabilities(conn)
        mode, _ = choose(settings.capture, caps)
        if mode == "logical":
            return mode, await setup.setup_logical(
                conn, config.rules.rules, settings.publication_name
            )
        installed = await (
            await conn.execute("SELECT to_regprocedure('syncline.capture_row()')")
        ).fetchone()
        if not installed or installed[0] is None:
            raise SynclineError("the database has no Syncline schema yet: run `syncline migrate`")
        return mode, await setup.setup_triggers(conn, config.rules.rules)


@sync_app.command("add")
def sync_add(
    table: Annotated[str, typer.Argument(help="schema.table, or table for public.table")],
    channel: Annotated[str, typer.Option(help="channel template, e.g. 'room:{room_id}'")],
    columns: Annotated[str, typer.Option(help="published columns: a,b,c or '*'")] = ALL_COLUMNS,
    ops: Annotated[
        str | None, typer.Option(help="insert,update,delete,truncate [all]", show_default=False)
    ] = None,
    truncate_channel: Annotated[
        str | None, typer.Option(help="fixed channel that announces a truncate")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a sync rule to syncline.toml and prepare the database to capture its table."""

    def body() -> None:
        path = config if config is not None else DEFAULT_CONFIG_FILE
        rule = _rule_body(table, channel, columns, ops, truncate_channel)
        settings = _settings(path if path.exists() else None)
        sync_config = _sync_config(settings, rule)  # namespaces, duplicates
        _append_rule(path, rule)
        out.print(f"added rule {escape(table)} → {escape(channel)} to {escape(str(path))}")
        url = _running_url(settings)
        if url is None:
            out.print("database not running: `syncline up` sets the table up when it starts")
        else:
            mode, report = asyncio.run(_apply(url, settings, sync_config))
            for change in report.changed:
                out.print(f"  {mode} capture: {escape(change)}")
            if not report.changed:
                out.print(f"  {mode} capture: the database was already set up")
            for schema, name in report.missing:
                out.print(
                    f"  table {schema}.{name} does not exist yet; "
                    "it is captured once created and Syncline restarted"
                )
        out.print("a running Syncline picks the rule up after a restart")

    _guarded(body)


# -- sync list --------------------------------------------------------------------------------


@dataclass
class _TableState:
    exists: bool = False
    in_publication: bool = False
    trigger: bool = False
    replica_identity: str = ""
    needs_full: bool = False


async def _table_states(
    url: str, settings: Settings, rules: list[Rule]
) -> tuple[str, dict[tuple[str, str], _TableState]]:
    conn = await _connect(url)
    states: dict[tuple[str, str], _TableState] = {}
    async with conn:
        caps = await capabilities(conn)
        mode, why = choose(settings.capture, caps)
        for rule in rules:
            key = rule.table_key
            state = states.setdefault(key, _TableState())
            row = await (
                await conn.execute(
                    "SELECT c.relreplident,"
                    " EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = %s"
                    "   AND p.schemaname = n.nspname AND p.tablename = c.relname),"
                    " EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid"
                    "   AND t.tgname = %s)"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
                    (settings.publication_name, setup.ROW_TRIGGER, *key),
                )
            ).fetchone()
            if row is None:
                continue
            state.exists = True
            state.replica_identity = _REPLIDENT.get(row[0], row[0])
            state.in_publication, state.trigger = bool(row[1]), bool(row[2])
            pk = await (
                await conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
                    " AND i.indisprimary",
                    key,
                )
            ).fetchall()
            if required_replica_identity(rule, [r[0] for r in pk]) is ReplicaIdentity.FULL:
                state.needs_full = True
    return f"{mode} ({why})", states


def _capture_text(state: _TableState) -> str:
    if not state.exists:
        return "table missing"
    parts = []
    if state.in_publication:
        parts.append("in publication")
    if state.trigger:
        parts.append("trigger installed")
    if not parts:
        parts.append("not set up")
    identity = f"replica identity {state.replica_identity}"
    if state.needs_full and state.replica_identity != "full":
        identity += " (needs full)"
    return ", ".join([*parts, identity])


@sync_app.command("list")
def sync_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the sync rules in force (defaults + syncline.toml) and their capture state."""

    def body() -> None:
        settings = _settings(config)
        rules = list(_sync_config(settings).rules.rules)
        n_defaults = len(app_rules())
        url = _running_url(settings)
        mode, states, note = None, None, None
        if url is None:
            note = "database not running: capture state unknown"
        else:
            try:
                mode, states = asyncio.run(_table_states(url, settings, rules))
            except SynclineError as error:
                note = str(error)
        rows = []
        for i, rule in enumerate(rules):
            row: dict[str, Any] = {
                "table": rule.qualified_table,
                "channel": rule.channel,
                "columns": rule.columns if rule.columns == ALL_COLUMNS else list(rule.columns),
                "ops": [op.value for op in OP_ORDER if op in rule.ops],
                "source": "default" if i < n_defaults else "syncline.toml",
            }
            if states is not None:
                state = states[rule.table_key]
                row.update(
                    exists=state.exists,
                    in_publication=state.in_publication,
                    trigger_installed=state.trigger,
                    replica_identity=state.replica_identity or None,
                )
            rows.append((rule, row))
        if as_json:
            data = {"capture": mode, "rules": [row for _, row in rows]}
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
            return
        grid = Table(title="Sync rules", title_justify="left")
        for name in ("table", "channel", "columns", "ops", "source"):
            grid.add_column(name, overflow="fold")
        if states is not None:
            grid.add_column("capture", overflow="fold")
        for rule, row in rows:
            cells = [rule.qualified_table, rule.channel, _columns_text(rule)]
            cells += [_ops_text(rule.ops), row["source"]]
            if states is not None:
                cells.append(_capture_text(states[rule.table_key]))
            grid.add_row(*(escape(c) for c in cells))
        # A console made now, not at import, so the width follows the terminal (or COLUMNS).
        Console(highlight=False).print(grid)
        out.print(f"capture: {escape(mode)}" if mode else escape(note or ""))

    _guarded(body)


# -- tail -------------------------------------------------------------------------------------


class _Listener(WSListener):
    """Hands every text frame (or None on disconnect) to a queue."""

    def __init__(self, queue: asyncio.Queue[str | None]) -> None:
        super().__init__()
        self.queue = queue

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.queue.put_nowait(frame.get_payload_as_utf8_text())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.queue.put_nowait(None)


def _websocket_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (a listen address, not one to connect to)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    info_url = f"http://{host}:{port}/api/info"
    try:
        with urllib.request.urlopen(info_url, timeout=5) as response:
            ws_url = json.loads(response.read())["websocket_url"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise SynclineError(f"cannot reach Syncline at {info_url}: {reason}") from None
    if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
        raise SynclineError(f"{info_url} gave no WebSocket URL")
    return ws_url


def _tail_secret(settings: Settings) -> str:
    key_file = settings.data_dir / JWT_KEY_FILE
    if settings.jwt_secret is None and settings.embedded and not key_file.exists():
        raise SynclineError(
            f"no JWT key in {settings.data_dir}: run tail in the directory of `syncline up`,"
            " or set SYNCLINE_JWT_SECRET"
        )
    return jwt_secret(settings)


def _summary(data: Mapping[str, Any]) -> str:
    row = data.get("row") or data.get("old") or {}
    if not isinstance(row, Mapping):
        return json.dumps(row)
    text = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in row.items())
    return text if len(text) <= 160 else text[:159] + "…"


def _print_publication(channel: str, pub: Mapping[str, Any], as_json: bool) -> None:
    data = pub.get("data")
    if as_json:
        line = {"channel": channel, "offset": pub.get("offset", 0), "data": data}
        sys.stdout.write(json.dumps(line, default=str) + "\n")
        sys.stdout.flush()
        return
    if isinstance(data, Mapping) and "op" in data:
        when = str(data.get("commit_time") or "")[:23].replace("T", " ")
        table = str(data.get("table", ""))
        text = f"{when}  {data['op']:<8} {table}  {_summary(data)}"
    else:
        text = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  message  {json.dumps(data, default=str)}"
    out.print(escape(text))


@dataclass
class _Tail:
    channel: str
    table: str | None
    as_json: bool
    subscribed: bool = field(default=False)

    def wanted(self, data: object) -> bool:
        if self.table is None:
            return True
        if not isinstance(data, Mapping):
            return False
        name = str(data.get("table", ""))
        return self.table in (name, f"public.{name}", name.removeprefix("public."))

    def handle(self, obj: Mapping[str, Any], transport: WSTransport) -> None:
        if not obj:  # a ping
            transport.send(WSMsgType.TEXT, wire.PING)
            return
        if "error" in obj:
            error = obj["error"]
            what = "connect" if obj.get("id") == 1 else f"subscribe to {self.channel}"
            raise SynclineError(f"{what} refused: {error.get('message', error)}")
        if obj.get("id") == 2:
            self.subscribed = True
            err.print(f"tailing {escape(self.channel)} (Ctrl+C to stop)")
            for pub in obj.get(Method.SUBSCRIBE.value, {}).get("publications", []):
                if self.wanted(pub.get("data")):
                    _print_publication(self.channel, pub, self.as_json)
            return
        push = obj.get("push")
        if not isinstance(push, Mapping):
            return
        if "disconnect" in push:
            reason = push["disconnect"].get("reason", "")
            raise SynclineError(f"disconnected by the server: {reason}")
        if "unsubscribe" in push and push.get("channel") == self.channel:
            reason = push["unsubscribe"].get("reason", "")
            raise SynclineError(f"unsubscribed from {self.channel} by the server: {reason}")
        pub = push.get("pub")
        channel = push.get("channel")
        if isinstance(pub, Mapping) and channel == self.channel and self.wanted(pub.get("data")):
            _print_publication(self.channel, pub, self.as_json)


async def _run_tail(ws_url: str, token: str, tail: _Tail) -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    try:
        transport, _ = await ws_connect(lambda: _Listener(queue), ws_url)
    except (TimeoutError, OSError, RuntimeError) as error:
        raise SynclineError(f"cannot connect to {ws_url}: {error}") from None
    try:
        commands = [
            wire.dumps({"id": 1, Method.CONNECT.value: {"token": token, "name": "syncline-tail"}}),
            wire.dumps({"id": 2, Method.SUBSCRIBE.value: {"channel": tail.channel}}),
        ]
        transport.send(WSMsgType.TEXT, wire.join_lines(commands))
        while (frame := await queue.get()) is not None:
            for line in frame.split("\n"):
                if line.strip():
                    tail.handle(json.loads(line), transport)
        raise SynclineError("the server closed the connection")
    finally:
        transport.disconnect()


@dataclass
class _TailArgs:
    channel: str
    table: str | None
    as_json: bool
    user: str
    host: str | None
    port: int | None
    config: Path | None


def _tail(args: _TailArgs) -> None:
    settings = _settings(args.config, host=args.host, port=args.port)
    token = jwt.encode({"sub": args.user}, _tail_secret(settings), algorithm="HS256")
    ws_url = _websocket_url(settings.host, settings.port)
    tail = _Tail(args.channel, args.table, args.as_json)
    try:
        asyncio.run(_run_tail(ws_url, token, tail))
    except KeyboardInterrupt:
        return


@dataclass
class _Check:
    """Doctor's findings: (level, text, fix) with level ok, info, warn or fail."""

    lines: list[tuple[str, str, str | None]] = field(default_factory=list)

    def add(self, level: str, text: str, fix: str | None = None) -> None:
        self.lines.append((level, text, fix))

    @property
    def failed(self) -> int:
        return sum(1 for level, _, _ in self.lines if level == "fail")


def tail(
    channel: Annotated[str, typer.Argument(help="channel to subscribe to")] = "orders",
    table: Annotated[str | None, typer.Option(help="only changes of this table")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    user: Annotated[str, typer.Option(help="the user (token sub) to connect as")] = (
        "syncline-tail"
    ),
    host: Annotated[str | None, typer.Option(help="Syncline's HTTP address [settings]")] = None,
    port: Annotated[int | None, typer.Option(help="Syncline's HTTP port [settings]")] = None,
    config: ConfigOption = None,
) -> None:
    """Print the changes published on a channel of a running Syncline, live."""
    _guarded(lambda: _tail(_TailArgs(channel, table, as_json, user, host, port, config)))


# -- doctor -----------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


async def _slot_checks(
    conn: psycopg.AsyncConnection[Any], settings: Settings, mode: str, running: bool, c: _Check
) -> None:
    slot = settings.slot_name
    row = await (
        await conn.execute(
            "SELECT active, restart_lsn::text, confirmed_flush_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
    ).fetchone()
    if row is None:
        if mode == "logical":
            c.add("info", f"replication slot {slot}: not created yet (Syncline makes it at start)")
        return
    active, restart_lsn, _, retained, lag, wal_status = row
    retained, lag = int(retained or 0), int(lag or 0)
    text = (
        f"replication slot {slot}: {'active' if active else 'inactive'},"
        f" restart_lsn {restart_lsn}, retains {_mb(retained)} of WAL, lag {_mb(lag)}"
    )
    drop = f"SELECT pg_drop_replication_slot('{slot}');"
    if wal_status == "lost":
        c.add("fail", text + ", WAL lost", f"the slot is unusable: {drop} then restart Syncline")
    elif mode != "logical":
        c.add("warn", text, f"{mode} capture does not read this slot; {drop} frees its WAL")
    elif not active and retained > SLOT_RETAINED_LIMIT:
        fix = f"the slot retains {_mb(retained)}: is Syncline running? start it, or {drop}"
        c.add("fail", text, fix)
    elif not active:
        c.add("warn" if running else "info", text, "start Syncline to read the slot")
    else:
        c.add("ok", text)


async def _doctor_checks(url: str, settings: Settings, c: _Check) -> None:
    conn = await _connect(url)
    async with conn:
        version = await (await conn.execute("SHOW server_version")).fetchone()
        c.add("ok", f"PostgreSQL {version[0] if version else '?'} at {mask_url(url)}")
        caps: ServerCapabilities = await capabilities(conn)
        wal_fix = "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
        role_fix = f"ALTER ROLE {caps.role} REPLICATION;"
        level = "warn" if settings.capture == "auto" else "fail"
        needs_logical = settings.capture in ("auto", "logical")
        if caps.wal_level == "logical":
            c.add("ok", "wal_level is logical")
        else:
            c.add(level if needs_logical else "info", f"wal_level is {caps.wal_level}", wal_fix)
        if caps.can_replicate:
            c.add("ok", f"role {caps.role} may replicate")
        else:
            who = f"role {caps.role} has no REPLICATION privilege"
            c.add(level if needs_logical else "info", who, role_fix)
        mode, why = choose(settings.capture, caps)
        c.add("ok", f"capture mode: {mode} ({why})")
        lock = await (
            await conn.execute(
                "SELECT l.pid, a.application_name FROM pg_locks l"
                " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
            )
        ).fetchone()
        running = lock is not None
        leader = str(lock[1] or "").removeprefix(CAPTURE_APPLICATION_PREFIX) if lock else ""
        c.add(
            "ok" if running else "info",
            f"capture leader: node {leader or '?'} (backend pid {lock[0]})"
            if lock
            else "no Syncline is capturing from this database now",
        )
        await _slot_checks(conn, settings, mode, running, c)
        outbox = await (await conn.execute("SELECT to_regclass('syncline.changes')")).fetchone()
        if outbox and outbox[0]:
            count_row = await (
                await conn.execute("SELECT count(*) FROM syncline.changes")
            ).fetchone()
            backlog = int(count_row[0]) if count_row else 0
            text = f"outbox backlog: {backlog} change(s) in syncline.changes"
            if backlog == 0:
                c.add("ok", text)
            elif not running:
                fix = "start Syncline (syncline up) to deliver them"
                fix += "; stale? DELETE FROM syncline.changes"
                c.add("fail", text, fix)
            elif backlog > OUTBOX_BACKLOG_LIMIT:
                c.add(
                    "fail", text, "Syncline is falling behind: check its log and the database load"
                )
            else:
                c.add("ok", text)
        try:
            config = _sync_config(settings)
        except ConfigError as error:
            c.add("fail", f"sync rules: {error}", "fix syncline.toml (see `syncline sync list`)")
            return
        tables = sorted({r.table_key for r in config.rules.rules})
        _, missing = await setup.existing_tables(conn, tables)
        for schema, name in missing:
            c.add(
                "warn", f"rule table {schema}.{name} does not exist", "create it, or drop its rule"
            )


def _doctor(config: Path | None) -> None:
    settings = _settings(config)
    url = _running_url(settings)
    if url is None:
        raise SynclineError(
            f"nothing to check: the embedded PostgreSQL in {settings.data_dir} is not running"
            " (start it with `syncline up`, or set DATABASE_URL)"
        )
    c = _Check()
    asyncio.run(_doctor_checks(url, settings, c))
    from syncline.db import migrate  # Alembic loads only for the commands that need it

    try:
        current, head = migrate.current_revision(url), migrate.head_revision()
    except Exception as error:
        c.add("fail", f"migrations: cannot read the revision: {_reason(error)}")
    else:
        if current == head:
            c.add("ok", f"migrations at head ({head})")
        else:
            c.add("fail", f"migrations at {current or 'none'}, head is {head}", "syncline migrate")
    marks = {"ok": "[green]ok  [/]", "info": "[blue]info[/]", "warn": "[yellow]warn[/]"}
    marks["fail"] = "[bold red]FAIL[/]"
    for level, text, fix in c.lines:
        out.print(f"{marks[level]} {escape(text)}")
        if fix and level != "ok":
            out.print(f"     fix: {escape(fix)}")
    if c.failed:
        out.print(f"[bold red]{c.failed} problem(s) found[/]")
        raise typer.Exit(1)
    out.print("[green]healthy[/]")


def doctor(config: ConfigOption = None) -> None:
    """Check the database for Syncline: wal_level, privileges, slot, outbox, migrations."""
    _guarded(lambda: _doctor(config))
