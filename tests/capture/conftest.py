"""The `capture` fixture: one capture source per parameter, running into a MemoryEngine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from syncline.engine.memory import MemoryEngine

from helpers.capture_harness import MODES, Capture, Received
from helpers.live_server import drop_slot


@pytest.fixture(params=MODES)
async def capture(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[Capture]:
    received = Received()
    engine = MemoryEngine()
    engine.subscribe_fanout(received)
    cap = Capture(schema_url, request.param, engine, received)
    await cap.start()
    try:
        yield cap
    finally:
        await cap.stop()
        await engine.close()
        await drop_slot(schema_url, cap.slot)
