"""`syncline bench fanout --receivers native`: the C subscribers account, time and count bytes
as the Python ones do, in JSON and Protobuf, against a real server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from syncline.bench.clients import ClientSpec
from syncline.bench.http_clients import connect_frame
from syncline.bench.native_clients import handshake, receiver_args, receiver_binary
from syncline.bench.server import Target, started_server
from syncline.core.proto import client_pb2 as pb
from syncline.errors import SynclineError

from helpers.bench_cli import INJECTED_LOSS, against, small_fanout
from helpers.bench_cli import run_bench as bench

SUBSCRIBERS = 4


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    with started_server() as target:
        yield target


def fanout(
    server: Target, *args: str, secret: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert server.secret is not None
    target = against(server.http_url, server.database_url, secret or server.secret)
    return bench(*small_fanout(*target, *args, subscribers=SUBSCRIBERS, processes=2))


def runs_of(proc: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each pool's only step, by (receivers, format)."""
    result = json.loads(proc.stdout)["result"]
    runs = result.get("runs") or [result]
    return {(run["settings"]["receivers"], run["format"]): run["steps"][0] for run in runs}


def test_native_receivers_deliver_everything_once_in_both_formats(server: Target) -> None:
    native = fanout(server, "--receivers", "native", "--format", "json", "--format", "protobuf")
    assert native.returncode == 0, native.stderr
    python = fanout(server, "--format", "json", "--format", "protobuf")
    assert python.returncode == 0, python.stderr
    steps = runs_of(native) | runs_of(python)
    for fmt in ("json", "protobuf"):
        step = steps["native", fmt]
        accounting = step["accounting"]
        assert accounting["expected"] == accounting["received"] == step["rows"] * SUBSCRIBERS
        assert accounting["received"] == step["deliveries"]
        assert accounting["lost"] == accounting["duplicated"] == accounting["unexpected"] == 0
        assert accounting["subscribers"] == SUBSCRIBERS
        latency = step["latency_ms"]
        assert latency["count"] == step["deliveries"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 5_000
        assert step["client_cpu_us_per_delivery"] > 0
        # The same frames reach both kinds of receiver: the same bytes a delivery (the rows
        # differ by a digit or two of their numbers).
        python_bytes = steps["python", fmt]["bytes_per_delivery"]
        assert step["bytes_per_delivery"] == pytest.approx(python_bytes, rel=0.05)
    assert (
        steps["native", "protobuf"]["bytes_per_delivery"]
        < steps["native", "json"]["bytes_per_delivery"]
    )


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_native_receivers_account_for_injected_loss_and_duplicates(
    server: Target, fmt: str
) -> None:
    proc = fanout(
        server,
        "--receivers",
        "native",
        "--format",
        fmt,
        *INJECTED_LOSS,
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["lost"] > 0
    assert result["duplicated"] > 0
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{result['lost']:,} lost" in line


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_a_refused_connect_is_a_one_line_error(server: Target, fmt: str) -> None:
    proc = fanout(
        server, "--receivers", "native", "--format", fmt, secret="not-the-server-secret-" + "z" * 32
    )
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{SUBSCRIBERS} of {SUBSCRIBERS} subscribers could not subscribe" in line
    assert "Traceback" not in proc.stderr


def test_native_receivers_are_websocket_only(server: Target) -> None:
    proc = fanout(server, "--receivers", "native", "--transport", "sse")
    assert proc.returncode == 2
    assert "WebSocket only" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = fanout(server, "--receivers", "rust")
    assert proc.returncode == 2
    assert "python or native" in proc.stderr


def test_the_handshake_is_what_the_python_subscribers_send() -> None:
    spec = ClientSpec("ws://127.0.0.1:8001/connection/websocket", "tok", "bench:x", 3)
    assert handshake(spec) == (1, connect_frame("tok", "bench:x"))
    opcode, payload = handshake(ClientSpec(**{**spec.__dict__, "format": "protobuf"}))
    assert opcode == 2
    connect = pb.Command()
    size = payload[0]
    connect.ParseFromString(payload[1 : 1 + size])
    assert (connect.id, connect.connect.token) == (1, "tok")
    subscribe = pb.Command()
    subscribe.ParseFromString(payload[2 + size :])
    assert (subscribe.id, subscribe.subscribe.channel) == (2, "bench:x")


def test_receiver_args_carry_the_url_and_refuse_other_transports() -> None:
    spec = ClientSpec("ws://localhost:9000/connection/websocket?x=1", "t", "c", 7, concurrency=3)
    args = receiver_args(spec)
    assert args[:5] == ["localhost", "9000", "/connection/websocket?x=1", "-", "1"]
    assert bytes.fromhex(args[5]) == connect_frame("t", "c")
    assert args[6:] == ["7", "3", "0", "0"]
    assert receiver_args(ClientSpec(**{**spec.__dict__, "format": "protobuf"}))[3] == (
        "centrifuge-protobuf"
    )
    with pytest.raises(SynclineError, match="WebSocket only"):
        receiver_args(ClientSpec(**{**spec.__dict__, "transport": "sse"}))
    with pytest.raises(SynclineError, match="ws://"):
        receiver_args(ClientSpec(**{**spec.__dict__, "ws_url": "wss://example.test/x"}))


def test_the_receiver_is_built_once_per_source() -> None:
    first = receiver_binary()
    assert first.is_file()
    assert receiver_binary() == first
    usage = subprocess.run([str(first)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
    assert "usage:" in usage.stderr


def test_native_receivers_answer_the_servers_pings() -> None:
    """A server that pings every second and closes a connection a second after an unanswered
    ping: a run several times that long loses nothing, in either format."""
    quick = {"SYNCLINE_PING_INTERVAL": "1", "SYNCLINE_PONG_TIMEOUT": "1"}
    with started_server(env=quick) as pinging:
        assert pinging.secret is not None
        target = against(pinging.http_url, pinging.database_url, pinging.secret)
        for fmt in ("json", "protobuf"):
            proc = bench(
                *small_fanout(*target, "--receivers", "native", "--format", fmt),
                "--seconds",
                "4",
            )
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)["result"]
            assert (result["lost"], result["duplicated"]) == (0, 0)
