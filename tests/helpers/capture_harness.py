"""Capture test harness: run one capture source into a MemoryEngine and record what it fans out."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from syncline.capture.pipeline import Pipeline
from syncline.capture.service import CaptureService
from syncline.core.changes import Change
from syncline.core.log import Publication
from syncline.engine.memory import MemoryEngine
from syncline.settings import load_settings
from syncline.sync_config import build_sync_config

MODES = ["logical", "trigger", "poll"]


@dataclass
class Received:
    """What the channel log fanned out, per channel, in order."""

    pubs: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    gaps: int = 0

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        self.pubs.setdefault(channel, []).append((pub.offset, orjson.loads(pub.data)))

    def on_gap(self, channel: str | None, /) -> None:
        self.gaps += 1

    def data(self, channel: str) -> list[Any]:
        return [payload for _, payload in self.pubs.get(channel, [])]

    async def wait_for(self, channel: str, count: int, timeout: float = 15.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.pubs.get(channel, [])) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"{channel}: {len(self.pubs.get(channel, []))} of {count} publications"
                )
            await asyncio.sleep(0.01)
        return self.data(channel)


@dataclass
class Capture:
    url: str
    mode: str
    engine: MemoryEngine
    received: Received
    service: CaptureService | None = None
    task: asyncio.Task[None] | None = None
    slot: str = field(default_factory=lambda: f"s_{secrets.token_hex(4)}")
    # Stand-in for kill -9: after this many appended changes the sink never returns, so
    # nothing after the last acknowledged position is acknowledged.
    die_after: int | None = None
    delivered: int = 0

    async def start(self) -> None:
        settings = load_settings(
            None,
            capture=self.mode,
            slot_name=self.slot,
            publication_name=self.slot,
            poll_interval=0.05,
        )
        sync = build_sync_config(settings)
        pipeline = Pipeline(sync.rules, sync.registry, self.engine)

        async def sink(changes: Sequence[Change]) -> None:
            await pipeline(changes)
            self.delivered += len(changes)
            if self.die_after is not None and self.delivered >= self.die_after:
                await asyncio.Event().wait()  # appended, never acknowledged

        self.service = CaptureService(self.url, settings, sync.rules, sink)
        self.task = asyncio.create_task(self.service.run())
        await asyncio.wait_for(self.service.ready.wait(), 15)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def sql(url: str, *statements: str, params: tuple[Any, ...] = ()) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for statement in statements:
            await conn.execute(statement, params or None)
        await conn.commit()
