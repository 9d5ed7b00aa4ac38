"""`syncline bench shapes` on a tiny run: it opens the shape, times every event through the
shape and through the orders channel, and counts the burst through both."""

from __future__ import annotations

from helpers.bench_cli import bench_json


def test_bench_shapes_end_to_end() -> None:
    args = ["--orders", "300", "--updates", "20", "--rate", "50", "--burst", "200", "--json"]
    document = bench_json("shapes", *args)
    assert document["command"] == "shapes"
    result = document["result"]
    assert result["open"]["rows"] == 150  # half of the orders are pending
    assert result["steady"]["shape"]["count"] == result["steady"]["channel"]["count"] == 20
    burst = result["burst"]
    assert burst["changes"] == 200
    assert burst["shape_latency"]["count"] == burst["channel_latency"]["count"] == 200
    assert burst["shape_changes_per_s"] > 0 and burst["shape_latency"]["p50"] > 0
