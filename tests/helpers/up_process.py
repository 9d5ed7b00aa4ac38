"""`syncline up` as a real child process with its embedded PostgreSQL, for kill and hang tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import jwt

from syncline.db.embedded import ServerInfo, free_port

READY_WITHIN_S = 30.0


class UpProcess:
    """One `syncline up` on free ports over a data dir of its own (outside pytest's tmp dir:
    pytest re-chmods that to 0700, cutting the server's system user off its data)."""

    def __init__(self, *, args: Sequence[str] = (), **env: str) -> None:
        """`env` is the whole SYNCLINE_* environment; `args` go after `syncline up`'s own
        (e.g. ``("--workers", "2")``)."""
        self.args = list(args)
        self.base = Path(tempfile.mkdtemp(prefix="syncline-test-up-"))
        self.data_dir = self.base / "data"
        self.port, self.gateway_port = free_port(), free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.gateway_port}/connection/websocket"
        self.log_path = self.base / "stderr.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
        clean.pop("DATABASE_URL", None)
        self._env = {**clean, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syncline",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--gateway-port",
                    str(self.gateway_port),
                    *self.args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self._env,
            )

    async def wait_ready(self, timeout: float = READY_WITHIN_S) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.log()
                try:
                    if (await http.get(f"{self.http_url}/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"not ready within {timeout} s:\n{self.log()[-3000:]}")

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])

    def postgres_pids(self) -> list[int]:
        """Every process of the embedded cluster: they all work in its data dir (Linux)."""
        pgdata = (self.data_dir / "pg").resolve()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if Path(os.readlink(entry / "cwd")) == pgdata:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    @property
    def database_url(self) -> str:
        password = (self.data_dir / "postgres.password").read_text().strip()
        port = int((self.data_dir / "postgres.port").read_text().strip())
        return ServerInfo("127.0.0.1", port, password).url()

    def token(self, sub: str) -> str:
        secret = (self.data_dir / "jwt.key").read_text().strip()
        return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")

    def children(self) -> list[int]:
        """The pids of the `syncline up` process's children (workers, a private redis-server)."""
        assert self.proc is not None
        return _children(self.proc.pid)

    def worker_pids(self) -> list[int]:
        """The running `syncline worker` children of `syncline up --workers N`."""
        return [pid for pid in self.children() if _cmdline(pid)[-2:] == ["syncline", "worker"]]

    def redis_pids(self) -> list[int]:
        """The private redis-server child of `syncline up --workers N` (none with an engine)."""
        return [pid for pid in self.children() if "redis-server" in " ".join(_cmdline(pid))]

    def worker_pids_by_name(self, node: str) -> dict[str, int]:
        """`<node>-w<i>` → the pid of worker i's latest start, from the parent's "worker
        started" lines (they need SYNCLINE_LOG_LEVEL=info)."""
        pids: dict[str, int] = {}
        for line in self.log().splitlines():
            if '"worker started"' in line:
                entry = json.loads(line)
                pids[f"{node}-w{entry['worker']}"] = int(entry["pid"])
        return pids

    def kill_postmaster(self) -> int:
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def signal_postgres(self, sig: signal.Signals) -> list[int]:
        """Send `sig` to every process of the embedded cluster (SIGSTOP: a hung database)."""
        pids = self.postgres_pids()
        for pid in pids:
            os.kill(pid, sig)
        return pids

    async def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the process took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"still running {timeout} s after SIGTERM")
            await asyncio.sleep(0.02)
        return self.proc.returncode, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Kill whatever is left: the process, then its PostgreSQL (even a stopped one; the
        data dir is thrown away)."""
        if self.proc is not None and self.proc.poll() is None:
            # Workers and a private redis-server run in sessions of their own: a kill of the
            # parent would orphan them.
            descendants = _descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            for pid in descendants:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in self.postgres_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """A process's children (Linux: every thread's `children` list in /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return sorted(set(found))


def _descendants(pid: int) -> list[int]:
    found, queue = [], _children(pid)
    while queue:
        child = queue.pop()
        found.append(child)
        queue += _children(child)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
