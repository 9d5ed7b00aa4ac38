"""Fan-out and latency: N subscribers of one channel, rows committed at R/s, every one accounted."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.progress import Progress, TaskID

from syncline.bench import histogram
from syncline.bench.accounting import Tally
from syncline.bench.clients import ClientPool, ClientSpec, ConnectStats, SubscriberPool
from syncline.bench.native_clients import NativeClientPool
from syncline.bench.server import LANES, Target, process_cpu_seconds, rule_toml
from syncline.bench.writer import Via, WriterProcess, write_rows
from syncline.errors import SynclineError

WARMUP_TIMEOUT_S = 30.0
# After the writer stops, deliveries still in flight get this long without progress to arrive.
DRAIN_IDLE_S = 10.0
DRAIN_MAX_S = 120.0
# A step whose writer reached less than this share of the asked rate says so and ends a ramp.
WRITER_SHORTFALL = 0.9


@dataclass
class FanoutOptions:
    """What to run: how many subscribers, at which rates, for how long."""

    subscribers: int = 1000
    processes: int = 2
    rate: float = 40.0
    seconds: float = 10.0
    ramp: bool = False
    ramp_step: float | None = None  # default: the starting rate
    max_rate: float = 2000.0
    p99_bound_ms: float = 100.0
    ramp_retries: int = 1  # a breach is confirmed by holding the same rate again
    payload: int = 64
    drop_every: int = 0
    drain_idle_s: float = DRAIN_IDLE_S
    dup_every: int = 0
    via: str = "rows"  # rows | publish (syncline.publish() in SQL) | http (server API)
    batch: int = 1  # publications per transaction with via=publish
    handshakes: int = 100  # connects in flight per client process
    # The subscribers' format; several: one pool of subscribers each on the same server, side
    # by side in one run.
    formats: list[str] = field(default_factory=lambda: ["json"])
    # The subscribers' transport; several: a pool each, side by side, as formats.
    transports: list[str] = field(default_factory=lambda: ["websocket"])
    # python (picows clients) | native (C, bench/native/receiver.c; WebSocket only): the
    # native ones cost the machine a tenth, so that the server, not they, is the bound.
    receivers: str = "python"

    def pools(self) -> list[tuple[str, str]]:
        """(format, transport) of each pool of subscribers, side by side in one run."""
        return [(f, t) for f in self.formats for t in self.transports]

    def rates(self) -> list[float]:
        if not self.ramp:
            return [self.rate]
        step = self.ramp_step or self.rate
        rates, rate = [], self.rate
        while rate <= self.max_rate + 1e-9:
            rates.append(round(rate, 3))
            rate += step
        return rates


@dataclass
class StepResult:
    """One rate held for the run's seconds."""

    rate: float
    offered_rate: float
    rows: int
    write_seconds: float
    subscribers: int
    deliveries: int
    deliveries_per_s: float
    latency_ms: dict[str, float | int]
    tally: Tally
    client_cpu_s: float
    hist: HdrHistogram = field(repr=False)
    server_cpu_s: float | None = None
    engine_cpu_s: float | None = None  # the private redis-server's, when there is one
    # The writer's INSERT+COMMIT round trip (WAL flush included): the part of the latency
    # spent before capture can see the row at all.
    commit_ms: dict[str, float | int] = field(default_factory=dict)
    commit_hist: HdrHistogram | None = field(default=None, repr=False)
    wire_bytes: int = 0  # WebSocket bytes the subscribers received (payload + frame headers)
    span_s: float = 0.0  # first to last delivery

    @property
    def bytes_per_s(self) -> float:
        return self.wire_bytes / self.span_s if self.span_s > 0 else 0.0

    @property
    def client_cpu_us_per_delivery(self) -> float:
        """The receivers' own CPU a delivery: they must not be what limits the run."""
        return self.client_cpu_s * 1e6 / self.deliveries if self.deliveries else 0.0

    def as_dict(self) -> dict[str, Any]:
        skip = ("hist", "commit_hist", "tally")
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        data["commit_ms"] = dict(self.commit_ms)
        data["latency_ms"] = dict(self.latency_ms)
        data["offered_rate"] = round(self.offered_rate, 1)
        data["write_seconds"] = round(self.write_seconds, 3)
        data["deliveries_per_s"] = round(self.deliveries_per_s, 1)
        data["client_cpu_s"] = round(self.client_cpu_s, 2)
        data["span_s"] = round(self.span_s, 3)
        data["bytes_per_s"] = round(self.bytes_per_s, 1)
        data["bytes_per_delivery"] = (
            round(self.wire_bytes / self.deliveries, 1) if self.deliveries else None
        )
        data["client_cpu_us_per_delivery"] = round(self.client_cpu_us_per_delivery, 2)
        for name in ("server_cpu_s", "engine_cpu_s"):
            value = getattr(self, name)
            if value is not None:
                data[name] = round(value, 2)
        data["accounting"] = self.tally.as_dict()
        # The whole distribution, HDR-encoded (base64): charts can be redrawn from the JSON.
        data["latency_hdr"] = histogram.encode(self.hist).decode()
        return data


@dataclass
class FanoutResult:
    """A fan-out (or latency) benchmark: the connections, each step, and the verdict."""

    options: FanoutOptions
    connect: ConnectStats
    warmup: Tally
    steps: list[StepResult] = field(default_factory=list)
    sustainable_rate: float | None = None
    stopped_because: str = ""
    format: str = "json"
    transport: str = "websocket"

    @property
    def tally(self) -> Tally:
        result = self.warmup
        for step in self.steps:
            result = result + step.tally
        # Summed per run above; the same subscribers took part in every run.
        runs = [self.warmup, *(step.tally for step in self.steps)]
        result.subscribers = self.connect.subscribed
        result.subscribers_with_loss = max(t.subscribers_with_loss for t in runs)
        return result

    @property
    def sustainable_deliveries_per_s(self) -> float | None:
        """Deliveries/s of the best step held within the bound at the sustainable rate."""
        bound = self.options.p99_bound_ms
        return max(
            (
                step.deliveries_per_s
                for step in self.steps
                if step.rate == self.sustainable_rate
                and step.tally.ok
                and float(step.latency_ms.get("p99", 0.0)) <= bound
            ),
            default=None,
        )

    def _sustainable_bytes_per_s(self) -> float | None:
        """Bytes/s of the step that gave `sustainable_deliveries_per_s`."""
        best = self.sustainable_deliveries_per_s
        step = next((s for s in self.steps if s.deliveries_per_s == best), None)
        return None if best is None or step is None else round(step.bytes_per_s, 1)

    def as_dict(self) -> dict[str, Any]:
        sustainable = self.sustainable_deliveries_per_s
        return {
            "settings": asdict(self.options),
            "connect": {
                "subscribers": self.connect.subscribed,
                "failed": self.connect.failed,
                "seconds": round(self.connect.seconds, 3),
                "per_second": round(self.connect.per_second, 1),
            },
            "steps": [step.as_dict() for step in self.steps],
            "sustainable_rate": self.sustainable_rate,
            "sustainable_deliveries_per_s": None if sustainable is None else round(sustainable, 1),
            "sustainable_bytes_per_s": self._sustainable_bytes_per_s(),
            "format": self.format,
            "transport": self.transport,
            "stopped_because": self.stopped_because,
            "accounting": self.tally.as_dict(),
            "lost": self.tally.lost,
            "duplicated": self.tally.duplicated,
        }


def _wait_for(
    pool: SubscriberPool,
    run: int,
    expected: int,
    idle_s: float,
    progress: Progress | None,
    task: TaskID | None,
    idle: Sequence[SubscriberPool] = (),
) -> None:
    """Until every delivery of `run` arrived, or none arrived for `idle_s`."""
    got, last_change = -1, time.monotonic()
    deadline = time.monotonic() + DRAIN_MAX_S
    while time.monotonic() < deadline:
        now_got = pool.received(run)
        if progress is not None and task is not None:
            progress.update(task, completed=now_got)
        if now_got >= expected:
            return
        if now_got != got:
            got, last_change = now_got, time.monotonic()
        elif time.monotonic() - last_change > idle_s:
            return
        pool.pump(0.05)
        for other in idle:
            other.pump()


def _step(
    target: Target,
    pool: SubscriberPool,
    run: int,
    rate: float,
    options: FanoutOptions,
    subscribers: int,
    progress: Progress | None,
    label: str = "",
    idle: Sequence[SubscriberPool] = (),
    lane: int = 0,
) -> StepResult:
    """Hold one rate; `idle`: the other servers' (or formats') subscriber processes, whose
    progress messages are read meanwhile so that their pipes never fill; `lane`: which of
    server.LANES the writer writes to."""
    note = "x" * options.payload
    engine_pid = target.engine.pid if target.engine is not None else None
    server_cpu, engine_cpu = process_cpu_seconds(target.pid), process_cpu_seconds(engine_pid)
    table, channel = LANES[lane]
    via = Via(options.via, options.batch, target.http_url, target.api_key or "", table, channel)
    writer = WriterProcess(target.database_url, run, rate, options.seconds, note, via)
    rows = max(int(rate * options.seconds), 1)
    write_task = deliver_task = None
    if progress is not None:
        write_task = progress.add_task(f"{label}{rate:g} rows/s: committing", total=rows)
        deliver_task = progress.add_task(
            f"{label}{rate:g} rows/s: delivered", total=rows * subscribers
        )
    try:
        while not writer.poll(0.05):
            if progress is not None and write_task is not None and deliver_task is not None:
                progress.update(write_task, completed=writer.written)
                progress.update(deliver_task, completed=pool.received(run))
            else:
                pool.pump()
            for other in idle:
                other.pump()
    finally:
        writer.close()
    written = writer.result
    assert written is not None
    if progress is not None and write_task is not None:
        progress.update(write_task, completed=written.rows)
    expected = written.rows * subscribers
    _wait_for(pool, run, expected, options.drain_idle_s, progress, deliver_task, idle)
    report = pool.report(run, written.rows)
    commits = histogram.merge([written.commit_hist])
    server_cpu_after, engine_cpu_after = (
        process_cpu_seconds(target.pid),
        process_cpu_seconds(engine_pid),
    )
    deliveries = report.tally.received - report.tally.duplicated
    return StepResult(
        rate=rate,
        offered_rate=written.rate,
        rows=written.rows,
        write_seconds=written.seconds,
        subscribers=subscribers,
        deliveries=deliveries,
        deliveries_per_s=deliveries / report.span_s if report.span_s > 0 else 0.0,
        latency_ms=histogram.summary_ms(report.hist),
        tally=report.tally,
        client_cpu_s=report.client_cpu_s,
        hist=report.hist,
        server_cpu_s=_difference(server_cpu, server_cpu_after),
        engine_cpu_s=_difference(engine_cpu, engine_cpu_after),
        commit_ms=histogram.summary_ms(commits),
        commit_hist=commits,
        wire_bytes=report.wire_bytes,
        span_s=report.span_s,
    )


def _difference(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _warmup(
    target: Target, pool: SubscriberPool, run: int, subscribers: int, lane: int = 0
) -> Tally:
    """One row that every subscriber must get before anything is measured."""
    table, channel = LANES[lane]
    write_rows(target.database_url, run, 1.0, 1.0, "warmup", via=Via(table=table, channel=channel))
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    while pool.received(run) < subscribers and time.monotonic() < deadline:
        pool.pump(0.05)
    if pool.received(run) == 0:
        raise SynclineError(
            f"no publication reached the subscribers of {channel!r} within"
            f" {WARMUP_TIMEOUT_S:.0f} s: the server needs the rule"
            f" {rule_toml(table, channel).strip().replace(chr(10), '; ')}"
            " (and a restart after adding it)"
        )
    return pool.report(run, 1).tally


def run_fanout(
    target: Target, options: FanoutOptions, progress: Progress | None = None
) -> FanoutResult:
    """Connect the subscribers, warm up, then hold each rate (ramp: until p99 passes the bound)."""
    return run_fanouts([target], options, progress)[0]


def run_fanouts(
    targets: Sequence[Target], options: FanoutOptions, progress: Progress | None = None
) -> list[FanoutResult]:
    """`run_fanout` on several servers (e.g. one per engine) and formats side by side: each rate
    is held by each server and format in turn, so that a shared machine's good and bad minutes
    fall on all of them alike; each ramp ends at its own breach. Results: per server, per
    format (in the order of `options.formats`)."""
    # Run numbers unique to this invocation: another bench writing to the same table can't mix in.
    base = secrets.randbelow(1 << 30)
    pools = options.pools()
    if len(pools) > len(LANES):
        raise SynclineError(f"at most {len(LANES)} formats or transports side by side")
    if any(t != "websocket" and f != "json" for f, t in pools):
        raise SynclineError("the HTTP transports are benchmarked in JSON only")
    if options.receivers == "native" and any(t != "websocket" for _, t in pools):
        raise SynclineError("the native receivers speak WebSocket only")
    with contextlib.ExitStack() as stack:
        ramps: list[_Ramp] = []
        for target in targets:
            # Each format's subscribers on a channel (lane) of their own: a step's publications
            # reach only the pool being measured.
            for lane, (fmt, transport) in enumerate(pools):
                several = len(targets) > 1
                label = _label(target if several else None, pool_name(options, fmt, transport))
                pool = stack.enter_context(
                    open_pool(_spec(target, options, fmt, lane, transport), options)
                )
                connect = _connect(pool, options, progress, label)
                warmup = _warmup(target, pool, base, connect.subscribed, lane)
                result = FanoutResult(options, connect, warmup, format=fmt, transport=transport)
                ramps.append(_Ramp(target, pool, label, result, base, lane=lane))
        for index, rate in enumerate(options.rates()):
            # Turns about, so that no server always goes right after another's step.
            for ramp in ramps if index % 2 == 0 else ramps[::-1]:
                if not ramp.done:
                    idle = [other.pool for other in ramps if other is not ramp]
                    ramp.hold(rate, options, progress, idle)
            if all(ramp.done for ramp in ramps):
                break
        for ramp in ramps:
            if options.ramp:
                if not ramp.done:
                    ramp.result.stopped_because = f"reached --max-rate {options.max_rate:g}"
                ramp.result.sustainable_rate = ramp.last_good
    return [ramp.result for ramp in ramps]


def open_pool(spec: ClientSpec, options: FanoutOptions) -> SubscriberPool:
    """The subscriber processes `options.receivers` asks for."""
    if options.receivers == "native":
        return NativeClientPool(spec, options.processes)
    return ClientPool(spec, options.processes)


def pool_name(options: FanoutOptions, fmt: str, transport: str) -> str | None:
    """How a pool is told from the others: its format, its transport (those that vary)."""
    parts = [fmt] if len(options.formats) > 1 else []
    parts += [transport] if len(options.transports) > 1 else []
    return " ".join(parts) or None


def _label(target: Target | None, fmt: str | None) -> str:
    parts = [target.engine.name] if target is not None and target.engine is not None else []
    parts += [fmt] if fmt is not None else []
    return f"{' '.join(parts)}: " if parts else ""


def _spec(
    target: Target,
    options: FanoutOptions,
    fmt: str = "json",
    lane: int = 0,
    transport: str = "websocket",
) -> ClientSpec:
    return ClientSpec(
        ws_url=target.ws_url,
        token=target.make_token("bench"),
        channel=LANES[lane][1],
        count=options.subscribers,
        concurrency=options.handshakes,
        drop_every=options.drop_every,
        dup_every=options.dup_every,
        format=fmt,
        transport=transport,
    )


def _connect(
    pool: SubscriberPool, options: FanoutOptions, progress: Progress | None, label: str
) -> ConnectStats:
    task = None
    if progress is not None:
        task = progress.add_task(f"{label}subscribers connected", total=options.subscribers)

    def tick() -> None:
        if progress is not None and task is not None:
            progress.update(task, completed=pool.subscribed())

    connect = pool.connect(tick)
    if progress is not None and task is not None:
        progress.update(task, completed=connect.subscribed)
    if connect.failed:
        first = connect.errors[0] if connect.errors else "unknown reason"
        raise SynclineError(
            f"{label}{connect.failed} of {connect.requested} subscribers could not subscribe:"
            f" {first}"
        )
    return connect


@dataclass
class _Ramp:
    """One server's subscribers and its way up the rates."""

    target: Target
    pool: SubscriberPool
    label: str
    result: FanoutResult
    run: int
    last_good: float | None = None
    done: bool = False
    lane: int = 0

    def hold(
        self,
        rate: float,
        options: FanoutOptions,
        progress: Progress | None,
        idle: Sequence[SubscriberPool],
    ) -> None:
        """One rate (held again on a breach before it counts); ends the ramp if it must."""
        result, subscribers = self.result, self.result.connect.subscribed
        # On a shared machine one noisy step can pass the bound: hold the rate again first.
        tries = 0
        while True:
            self.run, tries = self.run + 1, tries + 1
            step = _step(
                self.target,
                self.pool,
                self.run,
                rate,
                options,
                subscribers,
                progress,
                self.label,
                idle,
                self.lane,
            )
            result.steps.append(step)
            p99 = float(step.latency_ms.get("p99", 0.0))
            if not step.tally.ok or p99 <= options.p99_bound_ms:
                break
            if not options.ramp or tries > options.ramp_retries:
                break
        self.done = True
        if not step.tally.ok:
            result.stopped_because = f"publications lost or duplicated at {rate:g} rows/s"
            return
        if options.ramp and p99 > options.p99_bound_ms:
            held = f" ({tries} tries)" if tries > 1 else ""
            result.stopped_because = (
                f"p99 {p99:g} ms > {options.p99_bound_ms:g} ms at {rate:g} rows/s{held}"
            )
            return
        self.last_good = rate
        if options.ramp and step.offered_rate < WRITER_SHORTFALL * rate:
            result.stopped_because = (
                f"the writer reached only {step.offered_rate:.0f} of {rate:g} rows/s"
            )
            return
        self.done = False
