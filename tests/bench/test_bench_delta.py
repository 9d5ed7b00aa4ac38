"""`syncline bench delta` on a tiny run: it measures, checks every rebuilt publication, and
the JSON document holds each run and the medians. Sizes are not asserted beyond "smaller"."""

from __future__ import annotations

import json

import orjson

from syncline.bench.delta import rebuilt
from syncline.core.delta import DeltaChain
from syncline.core.log import Publication

from helpers.bench_cli import bench_json


def test_rebuilt_follows_whole_and_delta_pushes() -> None:
    chain = DeltaChain()
    holds = None
    pushes = []
    values = [{"status": s, "id": 7, "note": "x" * 40} for s in ("pending", "shipped", "delivered")]
    for n, value in enumerate(values, start=1):
        step = chain.step("orders", "E", Publication(n, orjson.dumps(value), None, 0))
        pushes.append(json.loads(step.frame_for(holds))["push"]["pub"])
        holds = step.key
    assert [p.get("delta", False) for p in pushes] == [False, True, True]
    assert [json.loads(text) for text in rebuilt(pushes)] == values


def test_bench_delta_end_to_end() -> None:
    args = ["--orders", "2", "--updates", "20", "--runs", "1", "--json"]
    document = bench_json("delta", *args)
    assert document["command"] == "delta"
    (run,) = document["result"]["runs"]
    assert run["publications"] == 22
    assert run["sent_as_delta"] >= 20  # every update (the first insert goes whole)
    assert 0 < run["delta_bytes"] < run["plain_bytes"]
    assert document["result"]["median"]["saved"] == run["saved"]
