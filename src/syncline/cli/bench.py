"""`syncline bench`: fan-out, latency, connections, capture and chat, measured end to end."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from syncline.errors import SynclineError

if TYPE_CHECKING:
    from syncline.bench.capture import CaptureResult

bench_app: typer.Typer = typer.Typer(
    name="bench",
    help="Measure Syncline: fan-out, latency, idle connections, capture, chat (k6).",
    no_args_is_help=True,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="HTTP base URL of a running Syncline (default: start one for the run)",
        show_default=False,
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        help="with --url: its PostgreSQL (the writer inserts bench rows there)",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="with --url: a connection JWT", show_default=False)
]
SecretOption = Annotated[
    str | None,
    typer.Option(
        "--jwt-secret",
        envvar="SYNCLINE_JWT_SECRET",
        help="with --url: the server's HS256 key, to sign tokens",
        show_default=False,
    ),
]
PidOption = Annotated[
    int | None,
    typer.Option("--pid", help="with --url: the server's process id (for RSS)", show_default=False),
]
CaptureOption = Annotated[
    str,
    typer.Option("--capture", help="capture of the started server: auto|logical|trigger|poll"),
]


def _engine_choices(values: list[str] | None) -> list[str] | None:
    from syncline.bench.engines import check_choice

    try:
        return None if not values else [check_choice(value) for value in values]
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _engine_choice(value: str | None) -> str | None:
    choices = _engine_choices(None if value is None else [value])
    return None if choices is None else choices[0]


_ENGINE_HELP = (
    "channel log of the started server: memory [default] | redis (a private redis-server on a"
    " free port, AOF everysec, stopped at the end) | a redis:// URL (keys under a prefix of the"
    " run's own)"
)
EngineOption = Annotated[
    str | None,
    typer.Option("--engine", callback=_engine_choice, help=_ENGINE_HELP, show_default=False),
]
EnginesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--engine",
        callback=_engine_choices,
        help=_ENGINE_HELP + "; repeated (--engine memory --engine redis): one server each, side"
        " by side in one run, each rate held by each in turn",
        show_default=False,
    ),
]


def _each_once(values: list[str] | None, allowed: tuple[str, ...], what: str) -> list[str] | None:
    for value in values or []:
        if value not in allowed:
            raise typer.BadParameter(f"one of {', '.join(allowed)}, not {value!r}")
    if values and len(set(values)) != len(values):
        raise typer.BadParameter(f"each {what} once")
    return values


def _format_choices(values: list[str] | None) -> list[str] | None:
    from syncline.bench.clients import FORMATS

    return _each_once(values, FORMATS, "format")


FormatsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--format",
        callback=_format_choices,
        help="the subscribers' format: json [default] | protobuf (centrifuge-protobuf);"
        " repeated (--format json --format protobuf): a pool of subscribers each on the same"
        " server, side by side in one run, each rate held by each in turn",
        show_default=False,
    ),
]


def _transport_choices(values: list[str] | None) -> list[str] | None:
    from syncline.bench.clients import TRANSPORTS

    return _each_once(values, TRANSPORTS, "transport")


TransportsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--transport",
        callback=_transport_choices,
        help="the subscribers' transport: websocket [default] | sse | http_stream (Centrifuge's"
        " HTTP emulation, JSON); repeated (--transport websocket --transport sse): a pool each"
        " on the same server, side by side in one run, as --format",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="write PNG charts (and k6's summary) here")
]
HandshakesOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="connects (WebSocket handshake and subscribe) in flight per client process",
    ),
]
DropOption = Annotated[int, typer.Option("--drop-every", hidden=True)]
DupOption = Annotated[int, typer.Option("--dup-every", hidden=True)]
# Test hook: how long a step waits for deliveries that stopped coming (a deliberate drop never
# arrives, and a test need not wait the default seconds for it).
DrainOption = Annotated[float, typer.Option("--drain-idle", hidden=True)]


@dataclass
class _Common:
    url: str | None
    database_url: str | None
    token: str | None
    jwt_secret: str | None
    pid: int | None
    capture: str
    as_json: bool
    out: Path | None
    engines: list[str] | None = None  # None: memory for a started server, a running one's own


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _run(
    command: str,
    common: _Common,
    body: Callable[[list[Any], Progress], dict[str, Any]],
    env: dict[str, str] | None = None,
) -> None:
    """Start (or reach) the servers (one per engine), run `body` with progress bars, print,
    chart, judge."""
    from syncline.bench import report
    from syncline.bench.engines import bench_engine
    from syncline.bench.server import remote_target, started_server
    from syncline.logs import configure_logging

    configure_logging("warning")
    if common.url is not None and common.engines is not None:
        _fail("--engine chooses the engine of the server the bench starts: not with --url", 2)

    @contextlib.contextmanager
    def targets() -> Iterator[list[Any]]:
        if common.url is None:
            with contextlib.ExitStack() as stack:
                started = []
                for choice in common.engines or ["memory"]:
                    engine = stack.enter_context(bench_engine(choice))
                    server = started_server(capture=common.capture, env=env, engine=engine)
                    started.append(stack.enter_context(server))
                yield started
        else:
            yield [
                remote_target(
                    common.url,
                    common.database_url,
                    token=common.token,
                    jwt_secret=common.jwt_secret,
                    pid=common.pid,
                    needs_database=command != "chat",
                )
            ]

    try:
        with targets() as tgts, report.progress_bars(err) as progress:
            for tgt in tgts:
                if tgt.self_started:
                    progress.console.print(f"syncline up: {tgt.http_url} (pid {tgt.pid})")
                    progress.console.print(tgt.engine.describe())
            result = body(tgts, progress)
            wheres = [
                {"http_url": t.http_url, "ws_url": t.ws_url, "self_started": t.self_started}
                for t in tgts
            ]
            engines = [None if t.engine is None else t.engine.as_dict() for t in tgts]
            # One server: the document's shape of old; several: a list each.
            where: Any = wheres[0] if len(tgts) == 1 else {"servers": wheres}
            engine_info: Any = engines[0] if len(tgts) == 1 else engines
    except SynclineError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if common.as_json:
        sys.stdout.write(report.document(command, where, result, engine_info) + "\n")
        sys.stdout.flush()
    failure = result.pop("_failure", None)
    if failure:
        _fail(str(failure))


def _common(
    url: str | None,
    database_url: str | None,
    token: str | None,
    jwt_secret: str | None,
    pid: int | None,
    capture: str,
    as_json: bool,
    out: Path | None,
    engines: list[str] | None = None,
) -> _Common:
    return _Common(url, database_url, token, jwt_secret, pid, capture, as_json, out, engines)


def _listed(engine: str | None) -> list[str] | None:
    return None if engine is None else [engine]


def _single(
    body: Callable[[Any, Progress], dict[str, Any]],
) -> Callable[[list[Any], Progress], dict[str, Any]]:
    """A body that measures one server (the commands that take one --engine)."""
    return lambda targets, progress: body(targets[0], progress)


def _fanout_body(
    command: str, common: _Common, options: Any
) -> Callable[[list[Any], Progress], dict[str, Any]]:
    def body(targets: list[Any], progress: Progress) -> dict[str, Any]:
        from syncline.bench import report
        from syncline.bench.accounting import describe_failure
        from syncline.bench.fanout import run_fanouts

        results = run_fanouts(targets, options, progress)
        console = report.console_for(common.as_json)
        progress.stop()
        # Results come per server, then per pool: format and transport (run_fanouts).
        pairs = [(t, f) for t in targets for f in options.pools()]
        names = [_run_name(t, options, f, len(targets) > 1) for t, f in pairs]
        runs = []
        for (target, (fmt, _transport)), result, name in zip(pairs, results, names, strict=True):
            data = result.as_dict()
            suffix = f" ({name})" if name else ""
            title = (
                f"{command}{suffix}: {options.subscribers:,} subscriber(s),"
                f" {options.seconds:g} s per rate"
            )
            console.print(report.fanout_table(title, data["steps"], console.width))
            if result.sustainable_rate is not None or options.ramp:
                console.print(
                    f"sustainable rate{suffix} (p99 ≤ {options.p99_bound_ms:g} ms):"
                    f" {result.sustainable_rate or 0:g} rows/s; stopped: {result.stopped_because}"
                )
            if common.out is not None:
                data["charts"] = _fanout_charts(command, common.out, options, target, result, fmt)
            data["_failure"] = describe_failure(result.tally)
            runs.append(data)
        if len(runs) == 1:
            return runs[0]
        # Side by side: each engine's (or format's) result, and each against the first.
        ratios = report.fanout_ratios(names, results)
        for line in ratios["lines"]:
            console.print(line)
        for run, (target, _fmt) in zip(runs, pairs, strict=True):
            run["engine"] = target.engine.name if target.engine is not None else None
        return {
            "runs": runs,
            "ratios": ratios["values"],
            "lost": sum(run["lost"] for run in runs),
            "duplicated": sum(run["duplicated"] for run in runs),
            "_failure": "; ".join(str(f) for run in runs if (f := run.pop("_failure", None))),
        }

    return body


def _run_name(target: Any, options: Any, pool: tuple[str, str], by_engine: bool) -> str:
    """How a run of a side-by-side bench is named: its engine, format, transport (those that
    vary)."""
    from syncline.bench.fanout import pool_name

    parts = [target.engine.name] if by_engine and target.engine is not None else []
    name = pool_name(options, *pool)
    return " ".join(parts + ([name] if name else []))


def _fanout_charts(
    command: str, out: Path, options: Any, target: Any, result: Any, fmt: str = "json"
) -> list[str]:
    from syncline.bench import charts

    # JSON runs keep their charts' names; a Protobuf run's get a suffix.
    tag = _chart_tag(target.engine) + ("" if fmt == "json" else f"-{fmt}")
    engine = f" ({target.engine.name} engine)" if target.engine is not None else ""
    engine += "" if fmt == "json" else f" ({fmt})"
    files = [
        charts.latency_chart(
            out / f"{'latency' if command == 'latency' else 'fanout-latency'}{tag}.png",
            _labelled(result.steps, with_commit=command == "latency"),
            f"{command}: commit → client, {options.subscribers:,} subscriber(s){engine}",
            options.p99_bound_ms if options.ramp else None,
        )
    ]
    if len(result.steps) > 1:
        files.append(
            charts.ramp_chart(
                out / f"{command}-ramp{tag}.png",
                [s.offered_rate for s in result.steps],
                [s.latency_ms for s in result.steps],
                [s.deliveries_per_s for s in result.steps],
                f"{command}: {options.subscribers:,} subscribers, latency vs rate{engine}",
                options.p99_bound_ms,
            )
        )
    return [str(f) for f in files]


def _chart_tag(engine: Any) -> str:
    """Charts of a Redis-engine run get their own names (and titles): memory's keep theirs."""
    return "-redis" if engine is not None and engine.name == "redis" else ""


def _labelled(steps: list[Any], with_commit: bool = False) -> list[tuple[str, Any]]:
    """One legend entry per step (a rate held again says so), and the writer's commits."""
    seen: dict[float, int] = {}
    out = []
    for step in steps:
        seen[step.rate] = seen.get(step.rate, 0) + 1
        again = f" (try {seen[step.rate]})" if seen[step.rate] > 1 else ""
        out.append((f"{step.rate:g} rows/s{again}", step.hist))
        if with_commit and step.commit_hist is not None:
            # The part of the latency spent in INSERT + COMMIT (WAL flush), before capture.
            out.append((f"{step.rate:g} rows/s: the writer's commit", step.commit_hist))
    return out


@bench_app.command()
def fanout(
    subscribers: Annotated[int, typer.Option(help="subscribers of the channel")] = 1000,
    rate: Annotated[float, typer.Option(help="rows committed per second (ramp: the first)")] = 40,
    seconds: Annotated[float, typer.Option(help="seconds per rate")] = 10,
    processes: Annotated[int, typer.Option(help="client processes")] = 2,
    ramp: Annotated[bool, typer.Option("--ramp", help="raise the rate until p99 > bound")] = False,
    ramp_step: Annotated[float | None, typer.Option(help="ramp increment [--rate]")] = None,
    max_rate: Annotated[float, typer.Option(help="highest rate of a ramp")] = 2000,
    p99_bound_ms: Annotated[float, typer.Option(help="the ramp's p99 bound")] = 100,
    ramp_retries: Annotated[int, typer.Option(help="hold a rate again before a breach counts")] = 1,
    payload: Annotated[int, typer.Option(help="bytes of filler per row")] = 64,
    via: Annotated[
        str,
        typer.Option(
            help="rows (captured inserts) | publish (syncline.publish() in SQL)"
            " | http (the server API; key from the data dir or SYNCLINE_API_KEY)"
        ),
    ] = "rows",
    batch: Annotated[int, typer.Option(help="publications per transaction (--via publish)")] = 1,
    handshakes: HandshakesOption = 100,
    receivers: Annotated[
        str,
        typer.Option(
            help="python (picows) | native (C, compiled on first use; WebSocket only):"
            " the native ones cost a tenth, so the server is the bound, not they"
        ),
    ] = "python",
    url: UrlOption = None,
    database_url: DatabaseUrlOption = None,
    token: TokenOption = None,
    jwt_secret: SecretOption = None,
    capture: CaptureOption = "auto",
    engine: EnginesOption = None,
    formats: FormatsOption = None,
    transports: TransportsOption = None,
    as_json: JsonOption = False,
    out: OutOption = None,
    drop_every: DropOption = 0,
    dup_every: DupOption = 0,
    drain_idle: DrainOption = 10.0,
) -> None:
    """N subscribers of one channel, rows committed at R/s: deliveries/s, latency, accounting."""
    from syncline.bench.fanout import FanoutOptions
    from syncline.bench.writer import VIA

    if via not in VIA:
        raise typer.BadParameter(f"one of {', '.join(VIA)}", param_hint="--via")
    if receivers not in ("python", "native"):
        raise typer.BadParameter("python or native", param_hint="--receivers")
    if receivers == "native" and any(t != "websocket" for t in transports or []):
        raise typer.BadParameter(
            "the native receivers speak WebSocket only", param_hint="--receivers"
        )
    if batch < 1 or (batch > 1 and via != "publish"):
        raise typer.BadParameter(
            "a positive number, above 1 only with --via publish", param_hint="--batch"
        )

    options = FanoutOptions(
        subscribers=subscribers,
        processes=processes,
        rate=rate,
        seconds=seconds,
        ramp=ramp,
        ramp_step=ramp_step,
        max_rate=max_rate,
        p99_bound_ms=p99_bound_ms,
        ramp_retries=ramp_retries,
        payload=payload,
        drop_every=drop_every,
        dup_every=dup_every,
        drain_idle_s=drain_idle,
        via=via,
        batch=batch,
        handshakes=handshakes,
        formats=formats or ["json"],
        transports=transports or ["websocket"],
        receivers=receivers,
    )
    common = _common(url, database_url, token, jwt_secret, None, capture, as_json, out, engine)
    _run("fanout", common, _fanout_body("fanout", common, options))


@bench_app.command()
def latency(
    rate: Annotated[float, typer.Option(help="single-row commits per second")] = 50,
    seconds: Annotated[float, typer.Option(help="how long")] = 20,
    url: UrlOption = None,
    database_url: DatabaseUrlOption = None,
    token: TokenOption = None,
    jwt_secret: SecretOption = None,
    capture: CaptureOption = "auto",
    engine: EnginesOption = None,
    as_json: JsonOption = False,
    out: OutOption = None,
    drop_every: DropOption = 0,
    dup_every: DupOption = 0,
) -> None:
    """One subscriber, single-row commits at a modest rate: the commit → client distribution."""
    from syncline.bench.fanout import FanoutOptions

    options = FanoutOptions(
        subscribers=1,
        processes=1,
        rate=rate,
        seconds=seconds,
        drop_every=drop_every,
        dup_every=dup_every,
    )
    common = _common(url, database_url, token, jwt_secret, None, capture, as_json, out, engine)
    _run("latency", common, _fanout_body("latency", common, options))


@bench_app.command()
def connections(
    count: Annotated[int, typer.Option("--connections", "-n", help="connections to open")] = 10_000,
    waves: Annotated[int, typer.Option(help="waves (one client process each)")] = 5,
    settle: Annotated[float, typer.Option(help="seconds before reading RSS after a wave")] = 2.0,
    handshakes: HandshakesOption = 100,
    url: UrlOption = None,
    database_url: DatabaseUrlOption = None,
    token: TokenOption = None,
    jwt_secret: SecretOption = None,
    pid: PidOption = None,
    capture: CaptureOption = "auto",
    engine: EngineOption = None,
    as_json: JsonOption = False,
    out: OutOption = None,
) -> None:
    """Open N idle connections (each subscribed): the gateway's RSS per connection, connects/s."""
    from syncline.bench.connections import ConnectionsOptions

    options = ConnectionsOptions(
        connections=count, waves=waves, settle_s=settle, handshakes=handshakes
    )
    common = _common(
        url, database_url, token, jwt_secret, pid, capture, as_json, out, _listed(engine)
    )

    def body(target: Any, progress: Progress) -> dict[str, Any]:
        from syncline.bench import charts, report
        from syncline.bench.connections import run_connections

        result = run_connections(target, options, progress)
        progress.stop()
        data = result.as_dict()

        def mb(value: float | None) -> str:
            return "-" if value is None else f"{value:,.1f} MB"

        rows = [
            ("connections opened (subscribed)", f"{result.opened:,}"),
            ("failed", f"{result.failed:,}"),
            ("gateway's own count", f"{result.gateway_connections or 0:,.0f}"),
            ("RSS before", mb(result.rss_before_mb)),
            ("RSS after", mb(result.rss_after_mb)),
            ("per connection", f"{result.kib_per_connection or 0:.1f} KiB"),
            ("connects/s", f"{result.connects_per_s:,.0f}"),
        ]
        report.console_for(common.as_json).print(report.pairs_table("connections", rows))
        if common.out is not None and result.rss_before_mb is not None:
            xs = [0.0, *(float(w.connections) for w in result.waves)]
            ys = [result.rss_before_mb, *(w.rss_mb or 0.0 for w in result.waves)]
            path = charts.line_chart(
                common.out / "connections-rss.png",
                xs,
                ys,
                x_label="open connections (each subscribed)",
                y_label="gateway RSS (MB)",
                title="idle connections: RSS of syncline up",
            )
            data["charts"] = [str(path)]
        if result.failed:
            data["_failure"] = f"{result.failed:,} of {count:,} connections failed"
        return data

    _run("connections", common, _single(body))


@bench_app.command(name="capture")
def capture_command(
    modes: Annotated[list[str] | None, typer.Argument(help="logical, trigger, poll")] = None,
    backlog: Annotated[int, typer.Option(help="changes in the backlog to drain")] = 100_000,
    rate: Annotated[int, typer.Option(help="commits/s for the latency part")] = 1000,
    seconds: Annotated[float, typer.Option(help="seconds of the latency part")] = 10,
    write_cost: Annotated[bool, typer.Option(help="also the trigger's cost on writes")] = False,
    engine: EnginesOption = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="a migrated database no Syncline captures from (default: a fresh embedded one)",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    out: OutOption = None,
) -> None:
    """Changes/s through one capture source alone, and its commit → append latency."""
    from syncline.bench import report
    from syncline.bench.capture_modes import MODES, CaptureOptions, run_capture_modes
    from syncline.bench.engines import bench_engine
    from syncline.logs import configure_logging

    configure_logging("warning")
    chosen = modes or list(MODES)
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        _fail(f"unknown capture mode {unknown[0]!r}: choose from {', '.join(MODES)}")
    options = CaptureOptions(chosen, backlog, rate, seconds, write_cost)
    try:
        with contextlib.ExitStack() as stack, report.progress_bars(err) as bars:
            engines = [stack.enter_context(bench_engine(e)) for e in engine or ["memory"]]
            for chosen_engine in engines:
                bars.console.print(chosen_engine.describe())
            run = run_capture_modes(options, database_url, bars, engines)
    except SynclineError as error:
        _fail(str(error), error.exit_code)
    data = run.as_dict()
    several = len(engines) > 1
    table_rows = []
    for r in run.results:
        lat = r.latency_ms
        table_rows.append(
            (
                f"{r.mode} ({r.engine})" if several else r.mode,
                f"{r.changes_per_s:,.0f} changes/s; p50 {lat.get('p50', 0):g} / p99"
                f" {lat.get('p99', 0):g} / max {lat.get('max', 0):g} ms; lost {r.lost},"
                f" dup {r.duplicated}{_outbox_note(r)}",
            )
        )
    console = report.console_for(as_json)
    console.print(report.pairs_table("capture", table_rows))
    if several:
        data["ratios"] = report.capture_ratios(run.results, engines[0].name)
        for mode_name, ratios in data["ratios"].items():
            for name, ratio in ratios.items():
                console.print(f"{mode_name}: {name} / {engines[0].name} changes/s = {ratio:.2f}")
    if out is not None:
        from syncline.bench import charts

        tag = "-engines" if several else _chart_tag(engines[0])
        path = charts.bar_chart(
            out / f"capture{tag}.png",
            [f"{r.mode} ({r.engine})" if several else r.mode for r in run.results],
            [r.changes_per_s for r in run.results],
            y_label="backlog drained (changes/s)",
            title=f"capture alone: {backlog:,}-change backlog,"
            f" {' vs '.join(e.name for e in engines)} engine",
        )
        data["charts"] = [str(path)]
    if as_json:
        where = {"database": "embedded" if database_url is None else "given"}
        infos = [e.as_dict() for e in engines]
        engine_info: Any = infos if several else infos[0]
        sys.stdout.write(report.document("capture", where, data, engine_info) + "\n")
    lost, duplicated = data["lost"], data["duplicated"]
    if lost or duplicated:
        _fail(f"{lost:,} changes lost and {duplicated:,} duplicated")


def _outbox_note(result: CaptureResult) -> str:
    """Where lost changes wait, for trigger and poll (see CaptureResult.outbox_left)."""
    left = result.outbox_left
    if not result.lost or not left:
        return ""
    return f"; the outbox still holds {left['unclaimed']} unclaimed, {left['claimed']} claimed"


@bench_app.command()
def chat(
    scenarios: Annotated[str, typer.Option(help="k6 scenarios: ladder,post")] = "ladder,post",
    users: Annotated[int, typer.Option(help="accounts registered for the run")] = 100,
    ladder_scale: Annotated[
        float, typer.Option(help="1.0 = the seeds' 18-minute 5 → 800 users ladder")
    ] = 0.1,
    message_interval: Annotated[float, typer.Option(help="seconds between a user's messages")] = 10,
    post_rate: Annotated[int, typer.Option(help="POST /messages per second")] = 2000,
    post_seconds: Annotated[float, typer.Option(help="seconds of the post scenario")] = 30,
    script: Annotated[Path | None, typer.Option(help="k6 script [bench/k6/chat.js]")] = None,
    rates: Annotated[
        str | None,
        typer.Option(
            help="offered rates for post, history and rpc, e.g. 1000,2000,3000 (each its own"
            " k6 run; the sustainable rate is the highest with p99 ≤ 50 ms) [--post-rate]",
            show_default=False,
        ),
    ] = None,
    peer: Annotated[
        bool,
        typer.Option(
            "--peer",
            help="also run post and history against the Node REST peer"
            " (bench/peers/chat-rest-peer.js) on the same database, right after Syncline at"
            " each rate, and print the ratio",
        ),
    ] = False,
    rpc_sockets: Annotated[int, typer.Option(help="rpc: WebSocket connections sending")] = 50,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=20,
            help="hold each offered rate this many times per side, in turn; each step reports"
            " the median of the tries (p99 included), and the sustainable rate follows it",
        ),
    ] = 1,
    url: UrlOption = None,
    database_url: DatabaseUrlOption = None,
    jwt_secret: SecretOption = None,
    capture: CaptureOption = "auto",
    engine: EngineOption = None,
    as_json: JsonOption = False,
    out: OutOption = None,
) -> None:
    """Run the k6 chat scenarios (bench/k6/chat.js): ladder, post, history, rpc (chat.send)."""
    from syncline.bench.chat import ChatOptions, check_chat_api

    if url is not None:
        # Before anything else: without the chat API there is nothing to measure.
        try:
            check_chat_api(url)
        except SynclineError as error:
            _fail(str(error), error.exit_code)
    try:
        offered = tuple(int(r) for r in rates.split(",")) if rates else ()
    except ValueError:
        _fail("--rates: comma-separated integers, e.g. 1000,2000", 2)
    if peer and url is not None and (database_url is None or jwt_secret is None):
        _fail("--peer with --url needs --database-url and --jwt-secret (the peer's)", 2)
    options = ChatOptions(
        scenarios,
        users,
        ladder_scale,
        message_interval,
        post_rate,
        post_seconds,
        script,
        rates=offered,
        peer=peer,
        rpc_sockets=rpc_sockets,
        repeat=repeat,
    )
    # The chat needs no database access from here: k6 speaks HTTP and WebSocket only.
    common = _common(url, None, None, None, None, capture, as_json, out, _listed(engine))

    def body(target: Any, progress: Progress) -> dict[str, Any]:
        import tempfile

        from syncline.bench import report
        from syncline.bench.chat import chat_rate_line, chat_rate_table, run_chat

        progress.stop()
        out_dir = common.out or Path(tempfile.mkdtemp(prefix="syncline-k6-"))
        with contextlib.ExitStack() as stack:
            peer_url = peer_pid = None
            if options.peer:
                from syncline.bench.node_peer import node_peer

                db = database_url or target.database_url
                secret = jwt_secret or target.secret
                peer_url, peer_pid = stack.enter_context(node_peer(db, secret))
            result = run_chat(target, options, out_dir, peer_url, peer_pid)
        data = result.as_dict()
        console = report.console_for(common.as_json)
        for scenario, steps in result.steps.items():
            console.print(chat_rate_table(scenario, steps))
            console.print(chat_rate_line(scenario, result.sustainable[scenario]))
        rows = [(f"post: {k}", str(v)) for k, v in result.post.items()]
        rows += [(f"ladder: {k}", str(v)) for k, v in result.ladder.items()]
        rows.append(("k6 exit code", str(result.k6_exit_code)))
        console.print(report.pairs_table("chat (k6)", rows))
        return data

    _run("chat", common, _single(body))


@bench_app.command()
def delta(
    orders: Annotated[int, typer.Option(min=1, help="orders on the dashboard")] = 20,
    updates: Annotated[int, typer.Option(min=1, help="row updates per run")] = 300,
    runs: Annotated[int, typer.Option(min=1, help="runs (medians are reported)")] = 5,
    capture: CaptureOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Fossil delta on the orders channel: wire bytes of row updates with and without delta.

    Starts its own server (it writes to the orders table) with delta allowed on `orders`.
    """
    from syncline.bench.delta import NAMESPACES_ENV, DeltaOptions

    options = DeltaOptions(orders=orders, updates=updates, runs=runs)
    common = _common(None, None, None, None, None, capture, as_json, None)

    def body(target: Any, progress: Progress) -> dict[str, Any]:
        from syncline.bench import report
        from syncline.bench.delta import run_delta

        task = progress.add_task("runs", total=runs)
        result = run_delta(target, options, lambda done: progress.update(task, completed=done))
        progress.stop()
        median = result["median"]
        rows = [
            ("publications per run", f"{orders + updates:,} ({orders} inserts, {updates} updates)"),
            ("plain, bytes a publication", f"{median['plain_bytes_per_publication']:,.0f}"),
            ("delta, bytes a publication", f"{median['delta_bytes_per_publication']:,.0f}"),
            ("saved", f"{median['saved']:.1%}"),
            ("plain, bytes an update", f"{median['plain_bytes_per_update']:,.0f}"),
            ("delta, bytes an update", f"{median['delta_bytes_per_update']:,.0f}"),
            ("saved on updates", f"{median['saved_on_updates']:.1%}"),
            ("sent as a delta", f"{median['sent_as_delta']:.1%}"),
        ]
        title = f"fossil delta on orders (medians of {runs} runs)"
        report.console_for(common.as_json).print(report.pairs_table(title, rows))
        return result

    _run("delta", common, _single(body), env=NAMESPACES_ENV)


@bench_app.command()
def shapes(
    orders: Annotated[int, typer.Option(min=2, max=1_000_000, help="rows of orders")] = 2000,
    updates: Annotated[int, typer.Option(min=1, max=100_000, help="steady phase updates")] = 300,
    rate: Annotated[float, typer.Option(min=1, max=10_000, help="steady updates per second")] = 100,
    burst: Annotated[
        int, typer.Option(min=100, max=1_000_000, help="rows flipped in the burst")
    ] = 20_000,
    capture: CaptureOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """A shape subscriber end to end: commit → client latency and changes/s.

    Starts its own server (it writes to the orders table); the same commits are timed through
    the shape "orders where status = 'pending'" and through the `orders` channel.
    """
    from syncline.bench.shapes import ShapeBenchOptions

    options = ShapeBenchOptions(orders=orders, updates=updates, rate=rate, burst=burst)
    common = _common(None, None, None, None, None, capture, as_json, None)

    def body(target: Any, progress: Progress) -> dict[str, Any]:
        from syncline.bench import report
        from syncline.bench.shapes import run_shapes

        task = progress.add_task("phases", total=3)
        result = run_shapes(target, options, lambda done: progress.update(task, completed=done))
        progress.stop()
        steady, fast, opened = result["steady"], result["burst"], result["open"]

        def p50_p99(summary: dict[str, Any]) -> str:
            return f"{summary['p50']} / {summary['p99']}"

        rows = [
            ("shape.open: rows, seconds", f"{opened['rows']:,} in {opened['seconds']:.3f}"),
            ("steady: shape p50 / p99 ms", p50_p99(steady["shape"])),
            ("steady: channel p50 / p99 ms", p50_p99(steady["channel"])),
            ("burst: shape changes/s", f"{fast['shape_changes_per_s']:,.0f}"),
            ("burst: channel changes/s", f"{fast['channel_changes_per_s']:,.0f}"),
            ("burst: writer alone, s", f"{fast['write_s']:.2f} for {fast['changes']:,}"),
            ("burst: shape p50 / p99 ms", p50_p99(fast["shape_latency"])),
        ]
        report.console_for(common.as_json).print(report.pairs_table("shapes end to end", rows))
        return result

    _run("shapes", common, _single(body))
