"""kill -9 in the middle of 10,000 committed changes, then restart: nothing is lost, and
everything read again carries its original position, so the channel log (which drops a
position it already has) publishes each change exactly once, in order."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import orjson
import psycopg
import pytest

import helpers
from helpers.live_server import drop_slot

CHILD = str(Path(next(iter(helpers.__path__))) / "capture_child.py")
TOTAL, PER_TXN = 10_000, 100


def _lines(path: Path) -> list[tuple[tuple[int, int], str]]:
    """(position, product name) of every captured change in the file, in file order."""
    if not path.exists():
        return []
    out = []
    data = path.read_bytes()
    # The capture process may be appending as we read: a last line without its newline is
    # still being written (its writes finish before it kills itself, so none is left torn).
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line.strip():
            record = orjson.loads(line)
            out.append(((int(record["pos"][0]), int(record["pos"][1])), str(record["name"])))
    return out


async def _spawn(
    url: str, mode: str, slot: str, out: Path, die_after: int = 0
) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        CHILD,
        url,
        mode,
        slot,
        str(out),
        str(die_after),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    try:
        # Logs come first; a restart may also wait for the killed instance's leader lock.
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()) and line.strip() != b"ready":
                pass
        assert line.strip() == b"ready", "the capture process exited before it was ready"
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc


@pytest.mark.parametrize("mode", ["logical", "trigger"])
async def test_kill_9_mid_stream_loses_nothing_and_repeats_only_by_position(
    mode: str, schema_url: str, tmp_path: Path
) -> None:
    slot = f"k_{secrets.token_hex(4)}"
    out = tmp_path / "log.jsonl"
    # The first process kills itself (SIGKILL) once a quarter is stored, before acknowledging.
    first = await _spawn(schema_url, mode, slot, out, die_after=TOTAL // 4)
    try:
        async with await psycopg.AsyncConnection.connect(schema_url) as conn:
            for start in range(0, TOTAL, PER_TXN):
                await conn.execute(
                    "INSERT INTO orders (customer_name, product_name)"
                    " SELECT 'k', lpad(n::text, 6, '0') FROM generate_series(%s::int, %s::int) n",
                    (start, start + PER_TXN - 1),
                )
                await conn.commit()
        assert await asyncio.wait_for(first.wait(), 60) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    before = len(_lines(out))
    assert TOTAL // 4 <= before < TOTAL, "the crash must come in the middle"

    second = await _spawn(schema_url, mode, slot, out)
    try:
        deadline = time.monotonic() + 90
        while len({position for position, _ in _lines(out)}) < TOTAL:
            assert time.monotonic() < deadline, "not every change came back after the restart"
            await asyncio.sleep(0.05)
    finally:
        second.terminate()
        await second.wait()
    await drop_slot(schema_url, slot)

    records = _lines(out)
    by_position: dict[tuple[int, int], str] = {}
    for position, name in records:
        # A change read again has its original position and content.
        assert by_position.setdefault(position, name) == name
    in_order = [by_position[p] for p in sorted(by_position)]
    assert in_order == [f"{n:06d}" for n in range(TOTAL)]
    # Only the unacknowledged tail was read again, never anything acknowledged before it.
    repeated = len(records) - TOTAL
    assert 0 <= repeated <= before
