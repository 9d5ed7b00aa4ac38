"""The Node REST peer (bench/peers/chat-rest-peer.js) on the run's database and key."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from syncline.db.embedded import free_port
from syncline.errors import SynclineError

# The peers' package.json and lock: the same pg the fan-out peers use (../shared/peers/node).
SHARED_PEERS = Path("/work/shared/peers/node")
READY_TIMEOUT_S = 15.0


def peer_script() -> Path:
    """bench/peers/chat-rest-peer.js of the source tree this package runs from."""
    return Path(__file__).resolve().parents[3] / "bench" / "peers" / "chat-rest-peer.js"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "syncline" / "node-peer"


def node_modules(peers_dir: Path | None = None) -> Path:
    """node_modules with pg, installed once (npm ci) into the cache from the peers' lock file:
    the shared peers directory is read-only."""
    source = peers_dir or Path(os.environ.get("SYNCLINE_PEERS_DIR", SHARED_PEERS))
    target = cache_dir()
    modules = target / "node_modules"
    if (modules / "pg").is_dir():
        return modules
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise SynclineError("--peer needs node and npm on PATH")
    lock = source / "package-lock.json"
    if not lock.exists():
        raise SynclineError(f"--peer: no {lock} (set SYNCLINE_PEERS_DIR)")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "package.json", target / "package.json")
    shutil.copy(lock, target / "package-lock.json")
    proc = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=target, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SynclineError(f"npm ci for the Node peer failed: {proc.stderr.strip()[-300:]}")
    return modules


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SynclineError(f"the Node peer exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SynclineError(f"the Node peer did not listen within {READY_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def node_peer(database_url: str, jwt_secret: str) -> Iterator[tuple[str, int]]:
    """The peer listening on a free port: its base URL and process id; stopped on exit."""
    modules = node_modules()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET": jwt_secret,
        "PORT": str(port),
        "PEERS_NODE_MODULES": str(modules),
    }
    proc = subprocess.Popen(
        ["node", str(peer_script())], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
