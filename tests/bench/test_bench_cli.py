"""`syncline bench` end to end on tiny runs: the JSON document, the charts, the accounting verdict.

Timings are never asserted: these runs only prove that the tool measures and accounts.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncline.bench import histogram
from syncline.bench.chat import check_chat_api, default_script, k6_binary
from syncline.bench.server import Target, started_server
from syncline.errors import SynclineError

from helpers.bench_cli import INJECTED_LOSS, small_fanout
from helpers.bench_cli import run_bench as bench


def document(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout holds one JSON document and nothing else."""
    data: dict[str, Any] = json.loads(proc.stdout)
    for key in ("command", "date", "machine", "versions", "target", "result"):
        assert key in data
    return data


def assert_png(path: Path) -> None:
    assert path.exists()
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    """One `syncline up` for the tests that use --url."""
    with started_server() as target:
        yield target


def remote(target: Target) -> list[str]:
    assert target.secret is not None
    return [
        "--url",
        target.http_url,
        "--database-url",
        target.database_url,
        "--jwt-secret",
        target.secret,
    ]


def test_fanout_against_its_own_server_prints_json_and_writes_charts(tmp_path: Path) -> None:
    proc = bench(
        "fanout",
        "--subscribers",
        "4",
        "--processes",
        "2",
        "--rate",
        "20",
        "--ramp",
        "--max-rate",
        "40",
        "--seconds",
        "1",
        "--p99-bound-ms",
        "60000",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    data = document(proc)
    assert data["command"] == "fanout"
    assert data["target"]["self_started"] is True
    result = data["result"]
    assert result["connect"] == result["connect"] | {"subscribers": 4, "failed": 0}
    assert [step["rate"] for step in result["steps"]] == [20, 40]
    for step in result["steps"]:
        assert step["subscribers"] == 4
        assert step["deliveries"] == step["rows"] * 4
        assert step["latency_ms"]["count"] == step["deliveries"]
        assert step["commit_ms"]["count"] == step["rows"]
        hdr = histogram.merge([step["latency_hdr"].encode()])
        assert hdr.get_total_count() == step["deliveries"]
        assert (
            0 < step["latency_ms"]["p50"] <= step["latency_ms"]["p99"] <= step["latency_ms"]["max"]
        )
        assert step["accounting"]["lost"] == step["accounting"]["duplicated"] == 0
    assert result["sustainable_rate"] == 40
    assert result["stopped_because"] == "reached --max-rate 40"
    assert (result["lost"], result["duplicated"]) == (0, 0)
    # The warm-up row and both steps, at every subscriber.
    rows = 1 + sum(step["rows"] for step in result["steps"])
    assert result["accounting"]["expected"] == rows * 4
    assert_png(tmp_path / "fanout-latency.png")
    assert_png(tmp_path / "fanout-ramp.png")
    assert sorted(result["charts"]) == sorted(
        str(tmp_path / name) for name in ("fanout-latency.png", "fanout-ramp.png")
    )


def test_injected_loss_and_duplicates_are_reported_and_fail_the_run(server: Target) -> None:
    proc = bench(*small_fanout(*remote(server), *INJECTED_LOSS))
    assert proc.returncode == 1
    data = document(proc)
    assert data["target"]["self_started"] is False
    result = data["result"]
    assert result["lost"] > 0
    assert result["duplicated"] > 0
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{result['lost']:,} lost" in line
    assert f"{result['duplicated']:,} duplicated" in line


def test_latency_with_one_subscriber(server: Target, tmp_path: Path) -> None:
    proc = bench(
        "latency",
        *remote(server),
        "--rate",
        "20",
        "--seconds",
        "1",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    result = document(proc)["result"]
    (step,) = result["steps"]
    assert step["subscribers"] == 1
    assert step["latency_ms"]["count"] == step["rows"] == 20
    assert_png(tmp_path / "latency.png")


def test_connections_reports_rss_and_connect_rate(server: Target, tmp_path: Path) -> None:
    assert server.pid is not None
    proc = bench(
        "connections",
        *remote(server),
        "--pid",
        str(server.pid),
        "-n",
        "30",
        "--waves",
        "2",
        "--settle",
        "0.2",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    result = document(proc)["result"]
    assert (result["opened"], result["failed"]) == (30, 0)
    assert [wave["connections"] for wave in result["waves"]] == [15, 30]
    assert result["rss_before_mb"] > 0
    assert result["rss_after_mb"] > 0
    assert result["kib_per_connection"] is not None
    assert result["connects_per_s"] > 0
    assert result["gateway_connections"] >= 30
    assert_png(tmp_path / "connections-rss.png")


def test_capture_wraps_the_capture_benchmark(migrated_url: str, tmp_path: Path) -> None:
    proc = bench(
        "capture",
        "logical",
        "poll",
        "--database-url",
        migrated_url,
        "--backlog",
        "300",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    result = document(proc)["result"]
    assert [mode["mode"] for mode in result["modes"]] == ["logical", "poll"]
    for mode in result["modes"]:
        assert mode["backlog_changes"] == 300
        assert mode["changes_per_s"] > 0
        assert mode["latency_changes"] == 50
    assert (result["lost"], result["duplicated"]) == (0, 0)
    logical, poll = result["modes"]
    assert logical["outbox_left"] is None
    assert poll["outbox_left"] == {"unclaimed": 0, "claimed": 0}
    assert_png(tmp_path / "capture.png")


def test_capture_run_again_on_the_same_database_counts_only_its_own_changes(
    migrated_url: str, tmp_path: Path
) -> None:
    """The second run's TRUNCATE of the bench table reaches the outbox through the first
    run's triggers: it is no change of the second run (it was counted a duplicate)."""
    for _ in range(2):
        proc = bench(
            "capture",
            "trigger",
            "--database-url",
            migrated_url,
            "--backlog",
            "50",
            "--rate",
            "20",
            "--seconds",
            "1",
            "--json",
        )
        assert proc.returncode == 0, proc.stderr
        result = document(proc)["result"]
        assert (result["lost"], result["duplicated"]) == (0, 0)


class _NoChat(http.server.BaseHTTPRequestHandler):
    """A server without the chat API: every path is 404."""

    def do_POST(self) -> None:
        self.send_error(404)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def no_chat_url() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoChat)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_chat_without_the_chat_api_fails_in_one_line(no_chat_url: str) -> None:
    with pytest.raises(SynclineError, match="no chat API"):
        check_chat_api(no_chat_url)
    proc = bench("chat", "--url", no_chat_url, "--json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: this server has no chat API yet")


def test_k6_loads_the_chat_script() -> None:
    """k6 parses the script and builds both scenarios from it (nothing is sent)."""
    proc = subprocess.run(
        [k6_binary(), "inspect", "-e", "SCENARIOS=ladder,post", str(default_script())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    scenarios = json.loads(proc.stdout)["scenarios"]
    assert scenarios["ladder"]["executor"] == "ramping-vus"
    assert max(stage["target"] for stage in scenarios["ladder"]["stages"]) == 800
    assert scenarios["post"]["executor"] == "constant-arrival-rate"
    assert scenarios["post"]["rate"] == 2000
