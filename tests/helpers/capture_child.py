"""A capture process for the kill -9 test: appends what it captures to a file, fsynced per
batch, before acknowledging (the file plays the durable channel log).

usage: python capture_child.py URL MODE SLOT OUTFILE [DIE_AFTER]

With DIE_AFTER, the process sends itself SIGKILL once that many changes are in the file, after
the fsync and before the source acknowledges them: the worst moment to die.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import orjson

from syncline.capture.service import CaptureService
from syncline.core.changes import Change
from syncline.logs import configure_logging
from syncline.settings import load_settings
from syncline.sync_config import build_sync_config


async def main(url: str, mode: str, slot: str, path: str, die_after: str = "0") -> None:
    settings = load_settings(
        None,
        capture=mode,
        slot_name=slot,
        publication_name=slot,
        log_level="warning",
        poll_interval=0.05,
    )
    configure_logging("warning", json=True)  # logs to stderr; stdout says "ready"
    sync = build_sync_config(settings)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def sink(changes: Sequence[Change]) -> None:
        lines = b"".join(
            orjson.dumps(
                {
                    "pos": [c.position.commit, c.position.seq],
                    "name": (c.row or {}).get("product_name"),
                }
            )
            + b"\n"
            for c in changes
            if c.table == "orders"
        )
        os.write(fd, lines)
        os.fsync(fd)
        written[0] += lines.count(b"\n")
        if int(die_after) and written[0] >= int(die_after):
            os.kill(os.getpid(), signal.SIGKILL)

    written = [0]
    service = CaptureService(url, settings, sync.rules, sink)
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
