"""Subscriber processes: many lean picows clients per process, driven over a pipe by the bench."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

import orjson
from hdrh.histogram import HdrHistogram
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from syncline.bench import histogram
from syncline.bench.accounting import SeqTracker, Tally, total
from syncline.bench.http_clients import HTTP_TRANSPORTS, HttpSubscriber, connect_frame
from syncline.bench.pb_reader import publication_data
from syncline.core.pb_wire import varint
from syncline.core.proto import client_pb2 as pb
from syncline.errors import SynclineError

PROGRESS_INTERVAL_S = 0.2
HANDSHAKE_TIMEOUT_S = 60.0
PONG = b"{}"
# Protobuf: a ping is an empty Reply (length 0) and the pong an empty Command.
PB_PONG = b"\x00"
FORMATS = ("json", "protobuf")
TRANSPORTS = ("websocket", *HTTP_TRANSPORTS)
PB_SUBPROTOCOL = "centrifuge-protobuf"
MAX_ERRORS_KEPT = 5


@dataclass(frozen=True)
class ClientSpec:
    """What one subscriber process does."""

    ws_url: str
    token: str
    channel: str
    count: int
    concurrency: int = 100  # handshakes in flight: a burst of SYNs overflows the accept queue
    drop_every: int = 0  # test hook: ignore every Nth publication (the accounting must see it)
    dup_every: int = 0  # test hook: count every Nth publication twice
    format: str = "json"  # json | protobuf (the centrifuge-protobuf subprotocol)
    transport: str = "websocket"  # websocket | http_stream | sse (JSON only)


@dataclass
class ConnectStats:
    """How the connections went, summed over the processes."""

    requested: int = 0
    subscribed: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.subscribed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunReport:
    """What the subscribers saw of one run, merged over the processes."""

    tally: Tally
    hist: HdrHistogram
    first_us: int
    last_us: int
    client_cpu_s: float
    # WebSocket bytes received (payload + frame header) since the previous report.
    wire_bytes: int = 0

    @property
    def span_s(self) -> float:
        return max(self.last_us - self.first_us, 0) / 1e6


class SubscriberPool(Protocol):
    """Subscriber processes a bench drives: ClientPool (Python) or NativeClientPool (C)."""

    def __enter__(self) -> SubscriberPool: ...
    def __exit__(self, *exc: object) -> None: ...
    def pump(self, timeout: float = 0.0) -> None: ...
    def connect(self, tick: Callable[[], None] | None = None) -> ConnectStats: ...
    def received(self, run: int) -> int: ...
    def subscribed(self) -> int: ...
    def errors(self) -> int: ...
    def report(self, run: int, expected: int) -> RunReport: ...
    def close(self) -> None: ...


class _Subscriber(WSListener):
    """One connection: connect, subscribe, then hand every publication to the process."""

    def __init__(self, proc: _Process) -> None:
        super().__init__()
        self.proc = proc
        self.runs: dict[int, SeqTracker] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        spec = self.proc.spec
        transport.send(WSMsgType.TEXT, connect_frame(spec.token, spec.channel))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._fail(f"closed by the server: {frame.get_close_code()}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        now_us = time.time_ns() // 1000
        self.proc.wire_bytes += _frame_bytes(frame.payload_size)
        for line in frame.get_payload_as_bytes().split(b"\n"):
            if line and self.on_json(line, now_us):  # the server's ping
                transport.send(WSMsgType.TEXT, PONG)

    def on_json(self, line: bytes, now_us: int) -> bool:
        """One JSON message from the server; True for a ping (the caller pongs)."""
        obj = orjson.loads(line)
        if not obj:
            return True
        push = obj.get("push")
        if push is not None:
            pub = push.get("pub")
            if pub is not None:
                self.proc.on_publication(self, pub["data"]["row"], now_us)
            elif "unsubscribe" in push or "disconnect" in push:
                self._fail(f"server push: {line[:200].decode(errors='replace')}")
        elif "error" in obj:
            self._fail(f"reply {obj.get('id')}: {obj['error']}")
        elif obj.get("id") == 1 and "connect" in obj:
            self.on_connected(obj["connect"])
        elif obj.get("id") == 2 and not self.ready.done():
            self.ready.set_result(None)
        return False

    def on_connected(self, result: dict[str, Any]) -> None:
        """The connect reply (the HTTP transports learn their session from it)."""

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._fail("disconnected")
        self.proc.disconnected += 1

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(SynclineError(reason))
        elif not self.proc.closing:
            self.proc.note_error(reason)


def _frame_bytes(payload: int) -> int:
    """A server frame on the wire: the payload and its (unmasked) header, RFC 6455 5.2."""
    return payload + (2 if payload < 126 else 4 if payload < 65536 else 10)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


class _PbSubscriber(_Subscriber):
    """The same subscriber in the Protobuf format: binary frames of varint-delimited Replies.

    A publication's ``data`` (the row's JSON, as in the JSON format) is read off the wire by
    pb_reader; any other Reply is parsed by upb (C).
    """

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        spec = self.proc.spec
        connect = pb.Command(id=1, connect=pb.ConnectRequest(token=spec.token, name="bench"))
        subscribe = pb.Command(id=2, subscribe=pb.SubscribeRequest(channel=spec.channel))
        transport.send(WSMsgType.BINARY, delimited(connect) + delimited(subscribe))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            super().on_ws_frame(transport, frame)
            return
        if frame.msg_type != WSMsgType.BINARY:
            return
        now_us = time.time_ns() // 1000
        self.proc.wire_bytes += _frame_bytes(frame.payload_size)
        data = frame.get_payload_as_bytes()
        pos, end = 0, len(data)
        while pos < end:
            size, pos = _varint(data, pos)
            if size == 0:  # the server's ping
                transport.send(WSMsgType.BINARY, PB_PONG)
                continue
            start, pos = pos, pos + size
            pub_data = publication_data(data, start, pos)
            if pub_data is not None:
                self.proc.on_publication(self, orjson.loads(pub_data)["row"], now_us)
                continue
            reply = pb.Reply.FromString(data[start:pos])
            if reply.HasField("push"):
                push = reply.push
                if push.HasField("pub"):
                    row = orjson.loads(push.pub.data)["row"]
                    self.proc.on_publication(self, row, now_us)
                elif push.HasField("unsubscribe") or push.HasField("disconnect"):
                    self._fail(f"server push: {str(push)[:200]}")
            elif reply.HasField("error"):
                self._fail(f"reply {reply.id}: {reply.error.code} {reply.error.message}")
            elif reply.id == 2 and not self.ready.done():
                self.ready.set_result(None)


class _HttpSubscriber(_Subscriber):
    """The JSON subscriber over an HTTP transport (SSE or http_stream) instead of WebSocket."""

    def __init__(self, proc: _Process) -> None:
        super().__init__(proc)
        spec = proc.spec
        self.http = HttpSubscriber(
            spec.transport,
            spec.ws_url,
            connect_frame(spec.token, spec.channel),
            self._on_http_message,
            self._on_http_bytes,
            self._on_http_lost,
        )

    def _on_http_message(self, message: bytes) -> None:
        if self.on_json(message, time.time_ns() // 1000):
            self.http.pong()

    def _on_http_bytes(self, count: int) -> None:
        self.proc.wire_bytes += count

    def _on_http_lost(self, reason: str) -> None:
        self._fail(reason)
        if self.ready.done():
            self.proc.disconnected += 1

    def on_connected(self, result: dict[str, Any]) -> None:
        self.http.learn(result)

    async def open(self) -> None:
        await asyncio.get_running_loop().create_connection(
            lambda: self.http, self.http.host, self.http.port
        )


def delimited(command: pb.Command) -> bytes:
    body = command.SerializeToString()
    return varint(len(body)) + body


class _Process:
    """The subscribers of one process, their accounting and latency histograms per run."""

    def __init__(self, spec: ClientSpec, pipe: Connection) -> None:
        self.spec = spec
        self.pipe = pipe
        self.subscribers: list[_Subscriber] = []
        self.hists: dict[int, HdrHistogram] = {}
        self.received: dict[int, int] = {}
        self.first_us: dict[int, int] = {}
        self.last_us: dict[int, int] = {}
        self.count = 0
        self.disconnected = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.closing = False
        self.cpu_mark = time.process_time()
        self.wire_bytes = 0

    def note_error(self, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(reason)

    def on_publication(self, sub: _Subscriber, row: dict[str, Any], now_us: int) -> None:
        self.count += 1
        spec = self.spec
        if spec.drop_every and self.count % spec.drop_every == 0:
            return
        run, seq = int(row["run"]), int(row["seq"])
        tracker = sub.runs.get(run)
        if tracker is None:
            tracker = sub.runs[run] = SeqTracker()
        if spec.dup_every and self.count % spec.dup_every == 0:
            tracker.record(seq)
        if not tracker.record(seq):
            return
        hist = self.hists.get(run)
        if hist is None:
            hist = self.hists[run] = histogram.new_histogram()
            self.first_us[run] = now_us
        histogram.record_us(hist, now_us - int(row["sent_at_us"]))
        self.received[run] = self.received.get(run, 0) + 1
        self.last_us[run] = now_us

    def report(self, run: int, expected: int) -> dict[str, Any]:
        tallies = []
        for sub in self.subscribers:
            tracker = sub.runs.pop(run, None) or SeqTracker()
            tallies.append(tracker.tally(expected))
        hist = self.hists.pop(run, None)
        return {
            "tally": total(tallies).as_dict(),
            "hist": histogram.encode(hist) if hist is not None else b"",
            "first_us": self.first_us.pop(run, 0),
            "last_us": self.last_us.pop(run, 0),
            "cpu_s": self._cpu_since_mark(),
            "wire_bytes": self._bytes_since_mark(),
        }

    def _bytes_since_mark(self) -> int:
        # Only one format's pool runs a step at a time: what arrived since the last report is
        # that run's (and a ping or two).
        used, self.wire_bytes = self.wire_bytes, 0
        return used

    def _cpu_since_mark(self) -> float:
        now = time.process_time()
        used, self.cpu_mark = now - self.cpu_mark, now
        return used

    async def connect_all(self) -> dict[str, Any]:
        sem = asyncio.Semaphore(self.spec.concurrency)
        failed = 0
        if self.spec.transport != "websocket":
            return await self._connect_http(sem)
        protobuf = self.spec.format == "protobuf"
        kind = _PbSubscriber if protobuf else _Subscriber
        # As the SDKs ask for Protobuf: the subprotocol (the 101 names it back).
        headers = {"Sec-WebSocket-Protocol": PB_SUBPROTOCOL} if protobuf else None

        async def one() -> None:
            nonlocal failed
            async with sem:
                sub: _Subscriber | None = None

                def factory() -> _Subscriber:
                    nonlocal sub
                    sub = kind(self)
                    return sub

                try:
                    await ws_connect(
                        factory,
                        self.spec.ws_url,
                        websocket_handshake_timeout=HANDSHAKE_TIMEOUT_S,
                        read_buffer_init_size=4096,
                        extra_headers=headers,
                    )
                    assert sub is not None
                    await asyncio.wait_for(sub.ready, HANDSHAKE_TIMEOUT_S)
                    self.subscribers.append(sub)
                except Exception as error:  # OSError, TimeoutError, refusals: all count
                    failed += 1
                    self.note_error(f"{type(error).__name__}: {error}")
                    if sub is not None and sub.transport is not None:
                        sub.transport.disconnect()

        return await self._timed(one, lambda: failed)

    async def _connect_http(self, sem: asyncio.Semaphore) -> dict[str, Any]:
        failed = 0

        async def one() -> None:
            nonlocal failed
            async with sem:
                sub = _HttpSubscriber(self)
                try:
                    await sub.open()
                    await asyncio.wait_for(sub.ready, HANDSHAKE_TIMEOUT_S)
                    self.subscribers.append(sub)
                except Exception as error:  # OSError, TimeoutError, refusals: all count
                    failed += 1
                    self.note_error(f"{type(error).__name__}: {error}")
                    sub.http.disconnect()

        return await self._timed(one, lambda: failed)

    async def _timed(
        self, one: Callable[[], Coroutine[Any, Any, None]], failed: Callable[[], int]
    ) -> dict[str, Any]:
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(self.spec.count)))
        return {
            "requested": self.spec.count,
            "subscribed": len(self.subscribers),
            "failed": failed(),
            "seconds": time.perf_counter() - start,
            "errors": list(self.errors),
        }

    def progress(self) -> dict[str, Any]:
        return {
            "received": dict(self.received),
            "subscribed": len(self.subscribers),
            "disconnected": self.disconnected,
            "errors": self.error_count,
        }


async def _serve(spec: ClientSpec, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    proc = _Process(spec, pipe)
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(pipe.fileno(), lambda: inbox.put_nowait(pipe.recv()))
    pipe.send(("started", {}))

    async def ticker() -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            pipe.send(("progress", proc.progress()))

    tick = asyncio.create_task(ticker())
    try:
        while True:
            command = await inbox.get()
            if command[0] == "connect":
                pipe.send(("connected", await proc.connect_all()))
                # The subscribers live to the end: out of the collector's way, a full collection
                # no longer walks them, so the client's GC pauses don't show up as latency.
                gc.collect()
                gc.freeze()
                proc.cpu_mark = time.process_time()
                proc.wire_bytes = 0
            elif command[0] == "report":
                pipe.send(("report", proc.report(command[1], command[2])))
            elif command[0] == "close":
                break
    finally:
        proc.closing = True
        tick.cancel()
        loop.remove_reader(pipe.fileno())
        for sub in proc.subscribers:
            if sub.transport is not None:
                sub.transport.disconnect()
        await asyncio.sleep(0.05)


def subscriber_main(spec: ClientSpec, pipe: Connection) -> None:
    """Entry point of a subscriber process."""
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError, EOFError):
        asyncio.run(_serve(spec, pipe))


def split(total_count: int, parts: int) -> list[int]:
    """`total_count` clients spread over at most `parts` processes, none empty."""
    parts = max(1, min(parts, total_count))
    base, extra = divmod(total_count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class ClientPool:
    """Subscriber processes and the pipes that drive them."""

    def __init__(self, spec: ClientSpec, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.pipes: list[Connection] = []
        self.pending: list[deque[tuple[str, dict[str, Any]]]] = []
        self.last_progress: list[dict[str, Any]] = []
        for count in split(spec.count, processes):
            ours, theirs = ctx.Pipe()
            child_spec = ClientSpec(**{**spec.__dict__, "count": count})
            proc = ctx.Process(target=subscriber_main, args=(child_spec, theirs), daemon=True)
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.pipes.append(ours)
            self.pending.append(deque())
            self.last_progress.append({})

    def __enter__(self) -> ClientPool:
        self._expect("started", timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pump(self, timeout: float = 0.0) -> None:
        """Read whatever the processes sent: keep progress, queue the rest."""
        ready = wait(self.pipes, timeout)
        for pipe in ready:
            assert isinstance(pipe, Connection)
            index = self.pipes.index(pipe)
            try:
                while pipe.poll():
                    kind, body = pipe.recv()
                    if kind == "progress":
                        self.last_progress[index] = body
                    else:
                        self.pending[index].append((kind, body))
            except EOFError:
                raise SynclineError(
                    f"subscriber process {index} died (exit code {self.procs[index].exitcode})"
                ) from None

    def _expect(
        self, kind: str, timeout: float, tick: Callable[[], None] | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not all(self.pending):
            if time.monotonic() > deadline:
                raise SynclineError(f"subscriber processes gave no '{kind}' within {timeout:.0f} s")
            self.pump(0.1)
            if tick is not None:
                tick()
        bodies = []
        for queue in self.pending:
            got, body = queue.popleft()
            if got != kind:
                raise SynclineError(f"subscriber process said {got!r}, expected {kind!r}")
            bodies.append(body)
        return bodies

    def _send(self, *command: object) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def connect(self, tick: Callable[[], None] | None = None) -> ConnectStats:
        """Every process opens and subscribes its clients; wall time from the go to the last."""
        start = time.perf_counter()
        self._send("connect")
        bodies = self._expect("connected", 600, tick)
        stats = ConnectStats(seconds=time.perf_counter() - start)
        for body in bodies:
            stats.requested += body["requested"]
            stats.subscribed += body["subscribed"]
            stats.failed += body["failed"]
            stats.errors += body["errors"][: MAX_ERRORS_KEPT - len(stats.errors)]
        return stats

    def received(self, run: int) -> int:
        """Deliveries of `run` so far (as of the processes' last progress message)."""
        self.pump()
        return sum(p.get("received", {}).get(run, 0) for p in self.last_progress)

    def subscribed(self) -> int:
        self.pump()
        return sum(p.get("subscribed", 0) for p in self.last_progress)

    def errors(self) -> int:
        return sum(p.get("errors", 0) for p in self.last_progress)

    def report(self, run: int, expected: int) -> RunReport:
        """Accounting and latency of one run, once the deliveries have drained."""
        self._send("report", run, expected)
        bodies = self._expect("report", 120)
        tally = total(Tally.from_dict(b["tally"]) for b in bodies)
        hist = histogram.merge(b["hist"] for b in bodies)
        firsts = [b["first_us"] for b in bodies if b["first_us"]]
        lasts = [b["last_us"] for b in bodies if b["last_us"]]
        return RunReport(
            tally,
            hist,
            min(firsts) if firsts else 0,
            max(lasts) if lasts else 0,
            sum(b["cpu_s"] for b in bodies),
            sum(b["wire_bytes"] for b in bodies),
        )

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send(("close",))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for pipe in self.pipes:
            pipe.close()
