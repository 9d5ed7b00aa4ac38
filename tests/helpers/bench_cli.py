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
