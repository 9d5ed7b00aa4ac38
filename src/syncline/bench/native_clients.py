"""Subscribers in C (bench/native/receiver.c): the same pool as ClientPool, a tenth of the cost.

The C receiver is compiled on first use with the machine's C compiler and cached by the hash
of its source. It speaks WebSocket only, in JSON or Protobuf; the handshake it sends is the
one the Python subscribers send, built here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from hdrh.histogram import HdrHistogram

from syncline.bench import histogram
from syncline.bench.accounting import Tally
from syncline.bench.clients import (
    MAX_ERRORS_KEPT,
    PB_SUBPROTOCOL,
    ClientSpec,
    ConnectStats,
    RunReport,
    delimited,
    split,
)
from syncline.bench.http_clients import connect_frame
from syncline.core.proto import client_pb2 as pb
from syncline.errors import SynclineError

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "syncline"
TALLY_FIELDS = (
    "expected",
    "received",
    "lost",
    "duplicated",
    "unexpected",
    "reordered",
    "subscribers",
    "subscribers_with_loss",
)


def receiver_binary() -> Path:
    """The compiled receiver, built now if this source was never built on this machine."""
    source = resources.files("syncline.bench").joinpath("native/receiver.c").read_bytes()
    binary = CACHE / f"bench-receiver-{hashlib.sha256(source).hexdigest()[:16]}"
    if binary.exists():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SynclineError(
            "--receivers native needs a C compiler: apt-get install gcc (or use the Python ones)"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        src = Path(work) / "receiver.c"
        src.write_bytes(source)
        built = Path(work) / "receiver"
        done = subprocess.run(
            [compiler, "-O2", "-std=gnu11", "-o", str(built), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SynclineError(f"the native receiver did not compile: {done.stderr.strip()}")
        # Another process may be building the same source: the rename is atomic either way.
        built.replace(binary)
    return binary


def handshake(spec: ClientSpec) -> tuple[int, bytes]:
    """The WebSocket opcode and payload of connect + subscribe, as the Python subscribers send."""
    if spec.format == "protobuf":
        connect = pb.Command(id=1, connect=pb.ConnectRequest(token=spec.token, name="bench"))
        subscribe = pb.Command(id=2, subscribe=pb.SubscribeRequest(channel=spec.channel))
        return 2, delimited(connect) + delimited(subscribe)
    return 1, connect_frame(spec.token, spec.channel)


def receiver_args(spec: ClientSpec) -> list[str]:
    """The receiver's command line for `spec` (its count: this process's share)."""
    if spec.transport != "websocket":
        raise SynclineError("the native receivers speak WebSocket only")
    url = urlsplit(spec.ws_url)
    if url.scheme != "ws" or url.hostname is None:
        raise SynclineError(f"the native receivers need a ws:// URL, not {spec.ws_url}")
    path = url.path or "/"
    if url.query:
        path += f"?{url.query}"
    opcode, payload = handshake(spec)
    return [
        url.hostname,
        str(url.port or 80),
        path,
        PB_SUBPROTOCOL if spec.format == "protobuf" else "-",
        str(opcode),
        payload.hex(),
        str(spec.count),
        str(spec.concurrency),
        str(spec.drop_every),
        str(spec.dup_every),
    ]


class _Receiver:
    """One receiver process and the lines it writes."""

    def __init__(self, binary: Path, spec: ClientSpec) -> None:
        self.proc = subprocess.Popen(
            [str(binary), *receiver_args(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        self.stdout: IO[bytes] = self.proc.stdout
        self.partial = b""
        self.pending: deque[list[str]] = deque()
        self.last_progress: dict[str, Any] = {}

    def fileno(self) -> int:
        return self.stdout.fileno()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None

    def read(self) -> None:
        """What the process wrote since the last read (the caller knows it is readable)."""
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            raise self._died()
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            words = line.decode(errors="replace").split(" ")
            if words[0] == "progress":
                self.last_progress = _progress(words[1:])
            else:
                self.pending.append(words)

    def _died(self) -> SynclineError:
        code = self.proc.poll()
        return SynclineError(f"a native receiver process died (exit code {code})")

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(SynclineError):
                self.send("close")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _progress(words: list[str]) -> dict[str, Any]:
    received = {}
    for item in words[3:]:
        run, _, got = item.partition("=")
        received[int(run)] = int(got)
    return {
        "subscribed": int(words[0]),
        "disconnected": int(words[1]),
        "errors": int(words[2]),
        "received": received,
    }


class NativeClientPool:
    """Receiver processes in C, driven as ClientPool drives its Python ones."""

    def __init__(self, spec: ClientSpec, processes: int) -> None:
        binary = receiver_binary()
        self.receivers: list[_Receiver] = []
        try:
            for count in split(spec.count, processes):
                child = ClientSpec(**{**spec.__dict__, "count": count})
                self.receivers.append(_Receiver(binary, child))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> NativeClientPool:
        self._expect("started", timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pump(self, timeout: float = 0.0) -> None:
        """Read whatever the processes wrote: keep progress, queue the rest."""
        ready, _, _ = select.select(self.receivers, [], [], timeout)
        for receiver in ready:
            receiver.read()

    def _expect(
        self, kind: str, timeout: float, tick: Callable[[], None] | None = None
    ) -> list[list[str]]:
        """The next `kind` line of every process (with the `error` lines before it)."""
        deadline = time.monotonic() + timeout
        while not all(any(w[0] == kind for w in r.pending) for r in self.receivers):
            if time.monotonic() > deadline:
                raise SynclineError(f"native receivers gave no '{kind}' within {timeout:.0f} s")
            self.pump(0.1)
            if tick is not None:
                tick()
        found = []
        for receiver in self.receivers:
            while True:
                words = receiver.pending.popleft()
                if words[0] == kind:
                    found.append(words)
                    break
                if words[0] != "error":
                    raise SynclineError(f"a native receiver said {words[0]!r}, expected {kind!r}")
                found.append(words)
        return found

    def connect(self, tick: Callable[[], None] | None = None) -> ConnectStats:
        """Every process opens and subscribes its clients; wall time from the go to the last."""
        start = time.perf_counter()
        for receiver in self.receivers:
            receiver.send("connect")
        lines = self._expect("connected", 600, tick)
        stats = ConnectStats(seconds=time.perf_counter() - start)
        for words in lines:
            if words[0] == "error":
                if len(stats.errors) < MAX_ERRORS_KEPT:
                    stats.errors.append(" ".join(words[1:]))
                continue
            stats.requested += int(words[1])
            stats.subscribed += int(words[2])
            stats.failed += int(words[3])
        return stats

    def received(self, run: int) -> int:
        """Deliveries of `run` so far (as of the processes' last progress line)."""
        self.pump()
        return sum(r.last_progress.get("received", {}).get(run, 0) for r in self.receivers)

    def subscribed(self) -> int:
        self.pump()
        return sum(r.last_progress.get("subscribed", 0) for r in self.receivers)

    def errors(self) -> int:
        return sum(r.last_progress.get("errors", 0) for r in self.receivers)

    def report(self, run: int, expected: int) -> RunReport:
        """Accounting and latency of one run, once the deliveries have drained."""
        for receiver in self.receivers:
            receiver.send(f"report {run} {expected}")
        lines = [w for w in self._expect("report", 120) if w[0] == "report"]
        tally = Tally()
        hist = histogram.new_histogram()
        firsts, lasts, cpu, wire = [], [], 0.0, 0
        for words in lines:
            numbers = words[1:13]
            tally = tally + Tally(**dict(zip(TALLY_FIELDS, map(int, numbers[:8]), strict=True)))
            if int(numbers[8]):
                firsts.append(int(numbers[8]))
                lasts.append(int(numbers[9]))
            cpu += float(numbers[10])
            wire += int(numbers[11])
            _record(hist, words[13] if len(words) > 13 else "")
        return RunReport(tally, hist, min(firsts, default=0), max(lasts, default=0), cpu, wire)

    def close(self) -> None:
        for receiver in self.receivers:
            receiver.close()


def _record(hist: HdrHistogram, buckets: str) -> None:
    for item in filter(None, buckets.split(",")):
        value, _, times = item.partition(":")
        hist.record_value(
            min(max(int(value), histogram.LOWEST_US), histogram.HIGHEST_US), int(times)
        )
