"""A Node script run as a subprocess: lines to its stdin, JSON events read from its stdout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"
WAIT = 10.0  # seconds for any single expected event

Event = dict[str, Any]


def node_binary(packages: Iterable[str], *, no_node: str, no_package: str) -> str:
    """The `node` executable; fails (never skips) if it or a tests/js/node_modules package is
    missing. `no_package` may use `{package}`."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(no_node)
    for package in packages:
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(no_package.format(package=package))
    return node


class NodeProcess:
    """One `node <script>` process: JSON events from its stdout, lines to its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, quit_line: str) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self._quit_line = quit_line
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._stderr: list[str] = []
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls, node: str, script: Path, *args: str, env: Mapping[str, str], quit_line: str
    ) -> Self:
        """Run `node script args...` in the script's folder, with `env` over os.environ;
        `quit_line` is what close() sends to ask it to stop."""
        proc = await asyncio.create_subprocess_exec(
            node,
            str(script),
            *args,
            cwd=script.parent,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, quit_line)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    self._stderr.append(f"(stdout, not JSON) {line!r}")
                    continue
                self.events.append(event)
                await self._queue.put(event)
        finally:
            await self._queue.put(None)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e["event"] == name]

    def describe(self) -> str:
        return f"events: {self.events}\nstderr: {self._stderr}"

    async def expect(self, check: Callable[[Event], bool], timeout: float = WAIT) -> Event:
        """The next event (after those already returned) that passes `check`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"expected event not seen in {timeout} s\n{self.describe()}")
            try:
                event = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                continue
            if event is None:
                raise AssertionError(f"node exited ({self.proc.returncode})\n{self.describe()}")
            if check(event):
                return event

    async def expect_event(self, name: str, timeout: float = WAIT, **fields: Any) -> Event:
        """The next event (after those already returned) named `name` with these fields."""
        try:
            return await self.expect(
                lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items()),
                timeout,
            )
        except AssertionError as exc:
            raise AssertionError(f"no {name} {fields}: {exc}") from None

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await asyncio.wait_for(self.proc.stdin.drain(), WAIT)

    async def close(self) -> None:
        """Ask the script to stop; kill it if it does not; reap it and its pipes."""
        stdin = self.proc.stdin
        try:
            if stdin is not None and not stdin.is_closing():
                with contextlib.suppress(ConnectionError):
                    stdin.write(self._quit_line.encode() + b"\n")
                    stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 5)
            finally:
                # Ends with the pipes (EOF); cancelled on a hung pipe so no task outlives the test.
                _, pending = await asyncio.wait(self._readers, timeout=5)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*self._readers, return_exceptions=True)
                if stdin is not None:
                    with contextlib.suppress(ConnectionError):
                        await stdin.wait_closed()
        finally:
            if self.proc.returncode is None:  # the above failed: never leave it running
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
