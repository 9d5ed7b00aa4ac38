"""`syncline bench …` run as a user runs it: a subprocess of this Python, its output captured."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_bench(
    *args: str, env: dict[str, str] | None = None, timeout: float = 100
) -> subprocess.CompletedProcess[str]:
    """The command's exit status, stdout and stderr; never raises for a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "syncline", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def bench_json(*args: str, timeout: float = 100) -> dict[str, Any]:
    """The JSON document of a run that must succeed (``--json`` among ``args``)."""
    proc = run_bench(*args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def small_fanout(*args: str, subscribers: int = 3, processes: int = 1) -> list[str]:
    """`fanout` arguments for a run a test can afford: a few subscribers, 30 rows/s for 1 s."""
    return [
        "fanout",
        "--subscribers",
        str(subscribers),
        "--processes",
        str(processes),
        "--handshakes",
        "2",
        "--rate",
        "30",
        "--seconds",
        "1",
        "--json",
        *args,
    ]


def against(http_url: str, database_url: str, secret: str) -> list[str]:
    """The arguments that point a bench at a server the test started."""
    return ["--url", http_url, "--database-url", database_url, "--jwt-secret", secret]


# Every 7th publication ignored and every 5th counted twice by the receivers: the accounting
# must report both and fail the run. Deliveries that never come are waited for 0.5 s only.
INJECTED_LOSS = ("--drop-every", "7", "--dup-every", "5", "--drain-idle", "0.5")
