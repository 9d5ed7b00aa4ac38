"""`syncline bench … --engine redis|URL`: tiny runs through the Redis engine, all accounted."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers.bench_cli import run_bench as bench
from helpers.bench_cli import small_fanout

pytestmark = pytest.mark.redis

# What the private redis-server runs with, and what the report must say it ran with.
PRODUCTION_PERSISTENCE = "appendonly yes, appendfsync everysec"


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def assert_private_redis(data: dict[str, Any], stderr: str) -> None:
    engine = data["engine"]
    assert engine["name"] == "redis"
    assert engine["started"] is True
    assert engine["persistence"] == PRODUCTION_PERSISTENCE
    assert "url" not in engine
    assert f"persistence: {PRODUCTION_PERSISTENCE}" in stderr


def assert_every_delivery(result: dict[str, Any], subscribers: int, redis: bool = True) -> None:
    assert (result["lost"], result["duplicated"]) == (0, 0)
    for step in result["steps"]:
        accounting = step["accounting"]
        assert accounting["expected"] == accounting["received"] == step["rows"] * subscribers
        assert accounting["lost"] == accounting["duplicated"] == accounting["reordered"] == 0
        # The redis-server's CPU time is measured per step, next to the server's.
        assert (step["engine_cpu_s"] >= 0) if redis else (step["engine_cpu_s"] is None)


def test_fanout_through_a_private_redis(tmp_path: Path) -> None:
    proc = bench(*small_fanout("--engine", "redis", "--out", str(tmp_path)))
    data = report(proc)
    assert_private_redis(data, proc.stderr)
    assert_every_delivery(data["result"], 3)
    # Its charts do not overwrite a memory run's.
    assert (tmp_path / "fanout-latency-redis.png").exists()


def test_latency_through_a_private_redis() -> None:
    proc = bench("latency", "--engine", "redis", "--rate", "20", "--seconds", "1", "--json")
    data = report(proc)
    assert_private_redis(data, proc.stderr)
    (step,) = data["result"]["steps"]
    assert step["subscribers"] == 1
    assert step["latency_ms"]["count"] == step["rows"] == 20
    assert_every_delivery(data["result"], 1)


def test_capture_appends_through_a_private_redis(migrated_url: str) -> None:
    proc = bench(
        "capture",
        "logical",
        "--engine",
        "redis",
        "--database-url",
        migrated_url,
        "--backlog",
        "300",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--json",
    )
    data = report(proc)
    assert_private_redis(data, proc.stderr)
    (mode,) = data["result"]["modes"]
    assert mode["engine"] == "redis"
    assert mode["backlog_changes"] == 300
    # The channel log itself holds every change once: offsets 1..350 in Redis.
    assert mode["log_offset"] == 350
    assert (mode["lost"], mode["duplicated"]) == (0, 0)
    assert mode["engine_cpu_seconds"] >= 0


def test_capture_modes_on_a_given_redis_each_get_their_own_keys(
    migrated_url: str, redis_url: str
) -> None:
    """Poll's commit positions are below logical's LSNs: on shared keys the engine would skip
    every poll change as already appended."""
    proc = bench(
        "capture",
        "logical",
        "poll",
        "--engine",
        redis_url,
        "--database-url",
        migrated_url,
        "--backlog",
        "200",
        "--rate",
        "20",
        "--seconds",
        "1",
        "--json",
    )
    data = report(proc)
    engine = data["engine"]
    assert (engine["name"], engine["started"], engine["pid"]) == ("redis", False, None)
    assert engine["persistence"] == "appendonly no, appendfsync everysec"
    for mode in data["result"]["modes"]:
        assert mode["log_offset"] == 220
        assert (mode["lost"], mode["duplicated"]) == (0, 0)


@pytest.mark.parametrize("command", ["fanout", "latency", "capture"])
def test_no_redis_server_on_path_is_one_line(tmp_path: Path, command: str) -> None:
    proc = bench(command, "--engine", "redis", "--json", env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line == "error: --engine redis needs redis-server on PATH (apt install redis-server)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fanout", "--engine", "mongodb://x"), "--engine"),
        (("capture", "--engine", "redis-please"), "--engine"),
        (("latency", "--engine", "redis", "--url", "http://127.0.0.1:9"), "not with --url"),
    ],
)
def test_bad_engine_options_are_one_clear_error(args: tuple[str, ...], message: str) -> None:
    proc = bench(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_fanout_side_by_side_holds_each_rate_on_each_engine(tmp_path: Path) -> None:
    proc = bench(
        "fanout",
        "--engine",
        "memory",
        "--engine",
        "redis",
        "--subscribers",
        "3",
        "--processes",
        "1",
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
    data = report(proc)
    assert [engine["name"] for engine in data["engine"]] == ["memory", "redis"]
    assert len(data["target"]["servers"]) == 2
    result = data["result"]
    assert [run["engine"] for run in result["runs"]] == ["memory", "redis"]
    for run in result["runs"]:
        assert [step["rate"] for step in run["steps"]] == [20, 40]
        assert run["sustainable_rate"] == 40
        assert_every_delivery(run, 3, redis=run["engine"] == "redis")
    assert (result["lost"], result["duplicated"]) == (0, 0)
    ratios = result["ratios"]["redis"]
    assert ratios["against"] == "memory"
    assert sorted(ratios["by_rate"]) == ["20", "40"]
    assert ratios["sustainable_rate"] == 1.0
    assert "redis / memory at 40 rows/s: deliveries/s" in proc.stderr
    for name in ("fanout-ramp.png", "fanout-ramp-redis.png"):
        assert (tmp_path / name).exists()


def test_capture_side_by_side(migrated_url: str) -> None:
    proc = bench(
        "capture",
        "logical",
        "--engine",
        "memory",
        "--engine",
        "redis",
        "--database-url",
        migrated_url,
        "--backlog",
        "200",
        "--rate",
        "20",
        "--seconds",
        "1",
        "--json",
    )
    data = report(proc)
    assert [engine["name"] for engine in data["engine"]] == ["memory", "redis"]
    result = data["result"]
    assert [(m["mode"], m["engine"]) for m in result["modes"]] == [
        ("logical", "memory"),
        ("logical", "redis"),
    ]
    for mode in result["modes"]:
        assert mode["log_offset"] == 220
    assert result["ratios"]["logical"]["redis"] > 0
    assert (result["lost"], result["duplicated"]) == (0, 0)
