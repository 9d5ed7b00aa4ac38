"""`syncline bench fanout --format` and `--transport`: JSON and Protobuf receivers, WebSocket,
SSE and http_stream receivers, side by side, all accounted."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from syncline.bench.server import Target, started_server

from helpers.bench_cli import INJECTED_LOSS, against, small_fanout
from helpers.bench_cli import run_bench as bench

SUBSCRIBERS = 3
PAYLOAD = 64  # the bench's default filler: every delivered frame carries at least this


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    with started_server() as target:
        yield target


def fanout(server: Target, *args: str) -> subprocess.CompletedProcess[str]:
    assert server.secret is not None
    target = against(server.http_url, server.database_url, server.secret)
    return bench(*small_fanout(*target, *args, subscribers=SUBSCRIBERS))


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)
    return dict(data["result"])


def test_json_and_protobuf_side_by_side_deliver_everything_once_and_count_the_bytes(
    server: Target,
) -> None:
    proc = fanout(server, "--format", "json", "--format", "protobuf")
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert (result["lost"], result["duplicated"]) == (0, 0)
    json_run, pb_run = result["runs"]
    assert (json_run["format"], pb_run["format"]) == ("json", "protobuf")
    assert json_run["settings"]["formats"] == ["json", "protobuf"]
    per_delivery = {}
    for run in (json_run, pb_run):
        (step,) = run["steps"]
        accounting = step["accounting"]
        assert accounting["expected"] == accounting["received"] == step["rows"] * SUBSCRIBERS
        assert accounting["lost"] == accounting["duplicated"] == accounting["unexpected"] == 0
        assert step["deliveries"] == step["rows"] * SUBSCRIBERS
        # Every delivery is a frame of its own here: the filler, the row's fields, the push.
        assert PAYLOAD < step["bytes_per_delivery"] < 1000
        assert step["bytes_per_s"] > 0
        assert step["client_cpu_us_per_delivery"] > 0
        per_delivery[run["format"]] = step["bytes_per_delivery"]
    # The same row is smaller in Protobuf (no key names around the push and publication).
    assert per_delivery["protobuf"] < per_delivery["json"]
    ratios = result["ratios"]["protobuf"]
    assert ratios["against"] == "json"
    by_rate = ratios["by_rate"]["30"]
    assert by_rate["bytes_per_delivery"] == pytest.approx(
        per_delivery["protobuf"] / per_delivery["json"], abs=0.01
    )
    for key in ("deliveries_per_s", "bytes_per_s", "client_cpu_us_per_delivery", "p99"):
        assert by_rate[key] is not None
    assert "protobuf / json at 30 rows/s" in proc.stderr
    assert "wire bytes/s" in proc.stderr


def test_protobuf_receivers_account_for_injected_loss_and_duplicates(server: Target) -> None:
    proc = fanout(
        server,
        "--format",
        "protobuf",
        *INJECTED_LOSS,
    )
    assert proc.returncode == 1
    result = result_of(proc)
    assert result["format"] == "protobuf"
    assert result["lost"] > 0
    assert result["duplicated"] > 0
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{result['lost']:,} lost" in line


@pytest.mark.parametrize(
    ("formats", "message"),
    [(["xml"], "one of json, protobuf, not 'xml'"), (["json", "json"], "each format once")],
)
def test_a_bad_format_is_a_one_line_error(formats: list[str], message: str) -> None:
    args = [arg for fmt in formats for arg in ("--format", fmt)]
    proc = bench("fanout", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_websocket_and_sse_side_by_side_deliver_everything_once(server: Target) -> None:
    proc = fanout(server, "--transport", "websocket", "--transport", "sse")
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert (result["lost"], result["duplicated"]) == (0, 0)
    ws_run, sse_run = result["runs"]
    assert (ws_run["transport"], sse_run["transport"]) == ("websocket", "sse")
    for run in (ws_run, sse_run):
        (step,) = run["steps"]
        assert step["deliveries"] == step["accounting"]["expected"] == step["rows"] * SUBSCRIBERS
        assert PAYLOAD < step["bytes_per_delivery"] < 1000
    assert result["ratios"]["sse"]["against"] == "websocket"
    assert "sse / websocket at 30 rows/s" in proc.stderr


def test_http_stream_receivers_account_for_injected_loss(server: Target) -> None:
    proc = fanout(server, "--transport", "http_stream", "--drop-every", "7", "--drain-idle", "0.5")
    assert proc.returncode == 1
    result = result_of(proc)
    assert (result["transport"], result["format"]) == ("http_stream", "json")
    assert result["lost"] > 0
    assert result["duplicated"] == 0


def test_the_http_transports_are_json_only(server: Target) -> None:
    proc = fanout(server, "--format", "protobuf", "--transport", "sse")
    assert proc.returncode != 0
    assert "the HTTP transports are benchmarked in JSON only" in proc.stderr
