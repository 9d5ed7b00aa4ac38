"""A private `redis-server` in the data dir, for `syncline up --workers N` without a Redis URL.

Several workers need a shared engine; when none is configured, `syncline up` starts one the
way it starts the embedded PostgreSQL: from the `redis-server` on PATH, listening on a free
loopback port with a generated password (kept in the data dir, mode 0600), persistence on,
stopped with Syncline. `appendfsync always`: the engine then counts the server as durable, so
a restart of Syncline (and of this Redis with it) keeps every channel's epoch and clients
resume with `recovered: true` (docs/topics/engines.md, "Epochs").
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from syncline.errors import SynclineError
from syncline.logs import get_logger

log = get_logger(__name__)

# Loading an append-only file of a busy channel log takes a moment; past this, give up.
START_TIMEOUT_S = 30.0
# redis-server writes its AOF and exits on SIGTERM; a server that does not is killed.
STOP_TIMEOUT_S = 10.0
PASSWORD_FILE = "redis.password"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """One redis-server owned by this Syncline, its data in ``<data dir>/redis``."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self._password()}@{self.host}:{self.port}/0"

    def _password(self) -> str:
        path = self.data_dir / PASSWORD_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def start(self) -> str:
        """Start the server; its URL. Raises SynclineError with how to fix what is missing."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise SynclineError(
                "--workers needs Redis: install redis-server (apt-get install redis-server), "
                "or set engine = redis://… (SYNCLINE_ENGINE) to use a Redis of yours"
            )
        workdir = self.data_dir / "redis"
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.port = _free_port(self.host)
        # The password goes in on stdin as a config line, never on the command line (where
        # `ps` would show it).
        config = (
            f"port {self.port}\nbind {self.host}\nprotected-mode yes\n"
            f"requirepass {self._password()}\n"
            f'dir {workdir}\nappendonly yes\nappendfsync always\nsave ""\n'
            "daemonize no\nlogfile redis.log\n"
        )
        self._proc = subprocess.Popen(
            [binary, "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl+C reaches Syncline, which stops this in order
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(config.encode())
        self._proc.stdin.close()
        self._wait_ready(workdir)
        log.info("private redis-server started", port=self.port, dir=str(workdir))
        return self.url

    def _wait_ready(self, workdir: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        auth = f"AUTH {self._password()}\r\nPING\r\n".encode()
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SynclineError(
                    f"redis-server exited at start (code {self._proc.returncode});"
                    f" see {workdir / 'redis.log'}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1) as sock,
            ):
                sock.sendall(auth)
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    answer += chunk
                if answer.endswith(b"+PONG\r\n"):
                    return
            time.sleep(0.05)
        self.stop()
        raise SynclineError(f"redis-server did not start within {START_TIMEOUT_S:.0f} s")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the server writes its AOF and exits), then SIGKILL past `timeout` (with
        appendfsync always, a kill loses nothing)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=min(timeout, STOP_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            log.warning("redis-server did not stop in time; killing it")
            proc.kill()
            proc.wait()
        log.info("private redis-server stopped")
