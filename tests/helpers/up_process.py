"""`syncline up` as a real child process with its embedded PostgreSQL, for kill and hang tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt

from syncline.db.embedded import ServerInfo, free_port

READY_WITHIN_S = 30.0


class UpProcess:
    """One `syncline up` on free ports over a data dir of its own (outside pytest's tmp dir:
    pytest re-chmods that to 0700, cutting the server's system user off its data)."""

    def __init__(self, **env: str) -> None:
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
            self.proc.kill()
            self.proc.wait()
        for pid in self.postgres_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)
