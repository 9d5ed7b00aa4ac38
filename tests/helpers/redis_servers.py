"""Real redis-server processes for the engine tests: standalone (restartable) and a cluster."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from syncline.db.embedded import free_port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run the README's test command")
    return path


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise TimeoutError(f"nothing listening on port {port}")


def _cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free and valid too."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20_000, 50_000)
        if all(_free(p) for p in (port, port + 10_000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cli(port: int, *args: str) -> str:
    return subprocess.run(
        [_binary("redis-cli"), "-p", str(port), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


@dataclass
class RedisServer:
    """One redis-server on a fixed port and data directory, so that it can be restarted."""

    workdir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    appendfsync: str = "everysec"
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            _binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)
        # Loading an AOF answers LOADING until done: wait for a real PING.
        deadline = time.monotonic() + 10
        while _cli(self.port, "PING").strip() != "PONG":
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not finish loading")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def wipe(self) -> None:
        """Forget all data on disk (the server must be stopped)."""
        assert self.proc is None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def cli(self, *args: str) -> str:
        return _cli(self.port, *args)


@dataclass
class RedisClusterServers:
    """Three masters, no replicas, started from the same redis-server binary."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(workdir: Path, masters: int = 3) -> RedisClusterServers:
    nodes = [
        RedisServer(
            workdir / f"node{i}",
            port=_cluster_port(),
            extra=(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ),
        )
        for i in range(masters)
    ]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in nodes:
            while "cluster_state:ok" not in node.cli("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the cluster did not reach cluster_state:ok")
                time.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return RedisClusterServers(nodes)
