"""An appending process for the Redis engine tests: several of them append to the same Redis.

usage: python redis_child.py URL PREFIX NAME BATCHES BATCH_SIZE CHANNELS [DELAY_S]

Appends BATCHES batches of BATCH_SIZE items, item i of the process going to channel
``c{i % CHANNELS}`` with data ``NAME:i`` and commit position (i, 0) when NAME is ``pos``-
prefixed. Prints one line per item, ``channel offset data``, flushed after each batch, so a
parent that kills the process with SIGKILL knows what was acknowledged.
"""

from __future__ import annotations

import asyncio
import sys

import structlog

from syncline.core.changes import CommitPosition
from syncline.engine.base import AppendRequest
from syncline.engine.redis import RedisEngine


async def main(
    url: str, prefix: str, name: str, batches: int, size: int, channels: int, delay: float
) -> None:
    engine = RedisEngine(url, prefix=prefix)
    with_position = name.startswith("pos")
    i = 0
    for _ in range(batches):
        items = []
        for _ in range(size):
            position = CommitPosition(i, 0) if with_position else None
            data = f"{name}:{i}".encode()
            items.append(AppendRequest(f"c{i % channels}", data, 10_000, 600.0, None, position))
            i += 1
        results = await engine.append_batch(items)
        lines = []
        for item, pub in zip(items, results, strict=True):
            offset = 0 if pub is None else pub.offset
            lines.append(f"{item.channel} {offset} {item.data.decode()}\n")
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
        if delay:
            await asyncio.sleep(delay)
    await engine.close()


if __name__ == "__main__":
    # stdout is the parent's record of acknowledged appends: logs go elsewhere.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    url, prefix, name, batches, size, channels, *rest = sys.argv[1:]
    asyncio.run(
        main(
            url,
            prefix,
            name,
            int(batches),
            int(size),
            int(channels),
            float(rest[0]) if rest else 0.0,
        )
    )
