"""`syncline bench fanout --via publish|http`: SQL and HTTP publications, all accounted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from syncline.bench.server import Target, started_server


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    with started_server() as target:
        yield target


def fanout(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    assert target.secret is not None and target.api_key
    argv = [sys.executable, "-m", "syncline", "bench", "fanout", "--url", target.http_url]
    argv += ["--database-url", target.database_url, "--jwt-secret", target.secret]
    argv += ["--subscribers", "3", "--processes", "1", "--seconds", "1", "--json", *args]
    env = {**os.environ, "SYNCLINE_API_KEY": target.api_key}
    return subprocess.run(argv, capture_output=True, text=True, timeout=100, env=env, check=False)


def step(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    (only,) = data["result"]["steps"]
    assert isinstance(only, dict)
    return only


@pytest.mark.parametrize(
    ("via", "batch"), [("publish", "1"), ("publish", "5"), ("http", "1")], ids=str
)
def test_publications_are_delivered_and_accounted(server: Target, via: str, batch: str) -> None:
    result = step(fanout(server, "--rate", "40", "--via", via, "--batch", batch))
    assert result["rows"] == 40
    accounting = result["accounting"]
    assert accounting["expected"] == accounting["received"] == 3 * 40
    assert accounting["lost"] == accounting["duplicated"] == accounting["reordered"] == 0
    assert result["latency_ms"]["count"] == 3 * 40


def test_injected_loss_is_caught_with_publish(server: Target) -> None:
    proc = fanout(
        server, "--rate", "30", "--via", "publish", "--drop-every", "7", "--drain-idle", "1"
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["result"]["lost"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--via", "carrier-pigeon"), "--via"),
        (("--via", "rows", "--batch", "3"), "--batch"),
        (("--via", "publish", "--batch", "0"), "--batch"),
    ],
)
def test_bad_options_are_one_clear_error(
    server: Target, args: tuple[str, ...], message: str
) -> None:
    proc = fanout(server, *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
