"""`syncline bench chat` rate scenarios: k6 builds them, sustainable rates and ratios."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from syncline.bench.chat import (
    ChatOptions,
    ChatResult,
    _counterparts,
    default_script,
    k6_binary,
    median_summary,
    sustainable_rates,
)
from syncline.bench.node_peer import peer_script


def step(
    rate: int, done: float, p99: float, failed: float = 0.0, cpu_us: int | None = None
) -> dict[str, float | None]:
    return {
        "requests_per_s": done,
        "p99_ms": p99,
        "failed_share": failed,
        "cpu_us_per_request": cpu_us,
    }


def test_k6_builds_the_history_and_rpc_scenarios() -> None:
    proc = subprocess.run(
        [
            k6_binary(),
            "inspect",
            "-e",
            "SCENARIOS=history,rpc",
            "-e",
            "POST_RATE=700",
            str(default_script()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    scenarios = json.loads(proc.stdout)["scenarios"]
    assert set(scenarios) == {"history", "rpc"}
    assert scenarios["history"]["executor"] == "constant-arrival-rate"
    assert scenarios["history"]["rate"] == 700
    assert scenarios["rpc"]["executor"] == "per-vu-iterations"


def test_sustainable_rate_is_the_highest_kept_up_with_and_the_ratio_compares_it() -> None:
    steps = [
        {"rate": 500, "syncline": step(500, 500, 9), "peer": step(500, 500, 5)},
        {"rate": 1000, "syncline": step(1000, 999, 40), "peer": step(1000, 1000, 60)},
        {"rate": 2000, "syncline": step(2000, 1500, 900), "peer": step(2000, 2000, 10)},
        {"rate": 3000, "syncline": step(3000, 3000, 10, failed=0.5), "peer": step(3000, 2000, 10)},
    ]
    # The peer's p99 at 1,000/s was over the bound, but it kept up at 2,000/s: its best is 2,000.
    best = sustainable_rates(steps)
    assert (best["syncline"], best["peer"], best["ratio"]) == (1000, 2000, 0.5)
    # Peaks count what was answered as expected: half of the 3,000/s failed.
    assert (best["syncline_peak"], best["peer_peak"], best["peak_ratio"]) == (1500, 2000, 0.75)
    alone = sustainable_rates([{"rate": 500, "syncline": step(500, 100, 9)}])
    assert (alone["syncline"], alone["peer"], alone["ratio"]) == (0, None, None)


def test_the_peer_script_is_in_the_tree() -> None:
    text = peer_script().read_text()
    assert "INSERT INTO messages" in text
    assert "ORDER BY id DESC LIMIT" in text


def test_cpu_is_compared_at_the_lowest_rate_both_kept_up_with() -> None:
    steps = [
        # Syncline fell behind at 300/s: its CPU per request there is not the one compared.
        {
            "rate": 300,
            "syncline": step(300, 250, 90, cpu_us=900),
            "peer": step(300, 300, 5, cpu_us=500),
        },
        {
            "rate": 600,
            "syncline": step(600, 600, 90, cpu_us=800),
            "peer": step(600, 600, 5, cpu_us=400),
        },
        {
            "rate": 900,
            "syncline": step(900, 900, 90, cpu_us=700),
            "peer": step(900, 900, 5, cpu_us=350),
        },
    ]
    best = sustainable_rates(steps)
    assert (best["cpu_rate"], best["syncline_cpu_us"], best["peer_cpu_us"]) == (600, 800, 400)
    assert best["cpu_ratio"] == 0.5  # the peer's µs over ours: requests per CPU second
    # Nobody kept up anywhere: the lowest rate measured by both.
    behind = [
        {
            "rate": 300,
            "syncline": step(300, 10, 90, cpu_us=900),
            "peer": step(300, 20, 5, cpu_us=450),
        }
    ]
    assert sustainable_rates(behind)["cpu_ratio"] == 0.5
    # No CPU measured (a server not started here): no comparison, not a zero.
    unknown = [{"rate": 300, "syncline": step(300, 300, 9), "peer": step(300, 300, 5, cpu_us=450)}]
    assert sustainable_rates(unknown)["cpu_ratio"] is None


def test_the_rpc_is_compared_with_the_peers_post_at_the_same_rate() -> None:
    result = ChatResult(ChatOptions())
    result.steps["post"] = [
        {
            "rate": 300,
            "syncline": step(300, 300, 9, cpu_us=900),
            "peer": step(300, 300, 5, cpu_us=450),
        },
        {
            "rate": 600,
            "syncline": step(600, 500, 90, cpu_us=900),
            "peer": step(600, 590, 40, cpu_us=400),
        },
    ]
    result.steps["rpc"] = [
        {"rate": 300, "syncline": step(300, 300, 20, cpu_us=300)},
        {"rate": 600, "syncline": step(600, 600, 45, cpu_us=280)},
    ]
    _counterparts(result)
    rpc = result.steps["rpc"]
    assert [s["peer"]["scenario"] for s in rpc] == ["post", "post"]
    assert rpc[1]["peer"]["requests_per_s"] == 590
    best = result.sustainable["rpc"]
    assert (best["syncline_peak"], best["peer_peak"], best["peak_ratio"]) == (600, 590, 1.02)
    assert (best["syncline"], best["peer"], best["ratio"]) == (600, 300, 2.0)
    assert best["cpu_ratio"] == 1.5  # 450 µs per POST over 300 µs per chat.send
    assert "scenario" not in result.steps["post"][0]["peer"]  # the post steps are unchanged


def test_a_rate_held_several_times_is_the_median_of_its_tries() -> None:
    tries: list[dict[str, Any]] = [
        {
            "requests": 1500,
            "requests_per_s": 100.0,
            "ok_per_s": 100.0,
            "p50_ms": 1.2,
            "p99_ms": 85.0,
            "failed_share": 0.0,
            "dropped_iterations": 0,
            "cpu_s": 1.1,
            "cpu_us_per_request": 731,
            "scenario": "post",
        },
        {
            "requests": 1500,
            "requests_per_s": 100.0,
            "ok_per_s": 100.0,
            "p50_ms": 1.0,
            "p99_ms": 13.0,
            "failed_share": 0.0,
            "dropped_iterations": 0,
            "cpu_s": 1.0,
            "cpu_us_per_request": 682,
            "scenario": "post",
        },
        {
            "requests": 1490,
            "requests_per_s": 99.3,
            "ok_per_s": 99.0,
            "p50_ms": 1.4,
            "p99_ms": 14.0,
            "failed_share": 0.01,
            "dropped_iterations": 10,
            "cpu_s": None,
            "cpu_us_per_request": None,
            "scenario": "post",
        },
    ]
    got = median_summary(tries)
    # One noisy try (p99 85 ms) does not decide the rate; every try's p99 is kept.
    assert got["p99_ms"] == 14.0 and got["p99_tries_ms"] == [85.0, 13.0, 14.0]
    assert (got["requests"], got["ok_per_s"], got["p50_ms"]) == (1500, 100.0, 1.2)
    assert (got["failed_share"], got["dropped_iterations"]) == (0.0, 0)
    # A number one try lacks has no median; the peer's counterpart name stays.
    assert got["cpu_s"] is None and got["cpu_us_per_request"] is None
    assert got["scenario"] == "post"
    assert median_summary(tries[:1]) is tries[0]
    # And the sustainable rate follows the median: held at p99 14 ms, not refused for 85.
    best = sustainable_rates([{"rate": 100, "syncline": got}])
    assert best["syncline"] == 100
