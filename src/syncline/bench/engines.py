"""The channel-log engine a benchmark runs on: memory, a private redis-server, or a given Redis."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncline.db.embedded import free_port
from syncline.errors import SynclineError

# Persistence of the private redis-server: what a production Redis holding a channel log would
# run (an append is on disk within about a second), so that appends pay for the AOF write.
# RDB snapshots are off: a fork in the middle of a step would measure the snapshot, not the engine.
PRIVATE_PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")
ENGINE_PARAMETERS = ("cluster", "prefix", "durable", "meta_ttl")
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


def check_choice(choice: str) -> str:
    """`memory`, `redis` or a Redis URL; anything else is a ValueError naming the three."""
    if choice in ("memory", "redis") or choice.startswith(("redis://", "rediss://")):
        return choice
    raise ValueError("one of memory, redis (a private redis-server) or a redis:// URL")


@dataclass
class BenchEngine:
    """The engine as the server under test (or the capture pipeline) is given it."""

    name: str  # memory | redis
    url: str  # the `engine` setting: "memory" or a redis:// URL
    started: bool = False  # a redis-server of the bench's own, stopped at the end
    address: str | None = None  # host:port of the Redis, without credentials
    version: str | None = None
    persistence: str | None = None  # e.g. "appendonly yes, appendfsync everysec"
    pid: int | None = None  # the private redis-server's process, for its CPU time

    def for_run(self) -> str:
        """The URL with a key prefix of its own (a given prefix gets a suffix): a Redis that
        outlives the run, or one run's capture modes, keeps each channel's last commit
        position, and appends from another database at lower positions would be skipped as
        duplicates."""
        if self.name == "memory":
            return self.url
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((value for name, value in query if name == "prefix"), "bench")
        query = [(name, value) for name, value in query if name != "prefix"]
        query.append(("prefix", f"{prefix}_{secrets.token_hex(4)}"))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def describe(self) -> str:
        if self.name == "memory":
            return "engine: memory"
        whose = "a private redis-server" if self.started else "the Redis at"
        return (
            f"engine: redis ({whose} {self.address}, Redis {self.version or '?'};"
            f" persistence: {self.persistence or 'unknown'})"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("url")  # it may hold a password; the address says where
        return data


def _redis_facts(url: str) -> tuple[str | None, str | None]:
    """Redis's version and persistence settings, if the server answers (a managed Redis may
    refuse CONFIG)."""
    import redis

    parts = urlsplit(url)
    # The engine's own query parameters mean nothing to redis-py (see engine/factory.py).
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ENGINE_PARAMETERS]
    plain = urlunsplit(parts._replace(query=urlencode(query)))
    client = redis.Redis.from_url(plain, socket_timeout=5)
    try:
        version = str(client.info("server").get("redis_version"))
        config = client.config_get("appendonly") | client.config_get("appendfsync")
        persistence = (
            f"appendonly {config.get('appendonly', '?')}, appendfsync"
            f" {config.get('appendfsync', '?')}"
        )
        return version, persistence
    except redis.ResponseError:
        return None, None
    except redis.RedisError as error:
        raise SynclineError(f"cannot reach the Redis at {_address(url)}: {error}") from None
    finally:
        client.close()


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


@contextlib.contextmanager
def _private_redis() -> Iterator[BenchEngine]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SynclineError("--engine redis needs redis-server on PATH (apt install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="syncline-bench-redis-"))
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work)]
    argv += ["--logfile", str(work / "redis.log"), *PRIVATE_PERSISTENCE]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_ready(url, proc, work / "redis.log")
        version, persistence = _redis_facts(url)
        yield BenchEngine(
            "redis", url, True, f"127.0.0.1:{port}", version, persistence, pid=proc.pid
        )
    finally:
        # SIGTERM: Redis fsyncs the AOF and exits; its data dies with the temp dir.
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                lines = log_path.read_text().splitlines() if log_path.exists() else []
                last = lines[-1].strip() if lines else "(no output)"
                raise SynclineError(f"redis-server exited with {proc.returncode}: {last}")
            # Connection refused before it listens; BUSY/LOADING while it reads its AOF.
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
    finally:
        client.close()
    raise SynclineError(f"redis-server was not ready within {READY_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def bench_engine(choice: str) -> Iterator[BenchEngine]:
    """`memory`; `redis`: a redis-server started on a free loopback port in a temp dir and
    stopped at the end; or a Redis URL, used as it is."""
    if choice == "memory":
        yield BenchEngine("memory", "memory")
    elif choice == "redis":
        with _private_redis() as engine:
            yield engine
    else:
        version, persistence = _redis_facts(check_choice(choice))
        yield BenchEngine("redis", choice, False, _address(choice), version, persistence)
