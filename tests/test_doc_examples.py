"""Every fenced shell, SQL, TOML, Python and JSON example in README.md and docs/ works as pasted:
TOML is a valid syncline.toml, SQL and Python run against a Syncline the test starts, JSON
parses, shell parses and every `syncline` command in it names real commands and options."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from syncline.cli import app
from syncline.settings import load_settings
from syncline.sync_config import build_sync_config

from helpers.live_server import LiveServer, start_live_server, stop_live_server

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = {"sh": "shell", "bash": "shell", "shell": "shell", "sql": "sql", "toml": "toml"}
LANGUAGES |= {"python": "python", "py": "python", "json": "json"}
FENCE = re.compile(r"^\s*```(\w*)\s*$")  # in a list item too, indented
API_KEY = "doc-examples-api-key-" + "k" * 32
# What the SQL examples take as given: an application table of their own.
SQL_PREREQUISITES = "CREATE TABLE IF NOT EXISTS jobs (id int PRIMARY KEY, state text);"
# The addresses the docs use, replaced by those of the Syncline the test starts.
DEFAULT_HTTP, DEFAULT_WS = "http://127.0.0.1:8000", "ws://127.0.0.1:8001/connection/websocket"


@dataclass(frozen=True)
class Example:
    """One fenced block: where it is, its language and its text."""

    path: Path
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        start, language = None, ""
        for number, line in enumerate(lines, 1):
            match = FENCE.match(line)
            if match is None:
                continue
            if start is None:
                start, language = number, match[1].lower()
                continue
            if language in LANGUAGES:
                text = textwrap.dedent("\n".join(lines[start : number - 1])) + "\n"
                found.append(Example(path, start, LANGUAGES[language], text))
            start = None
    return found


def of(language: str) -> list[Any]:
    return [pytest.param(e, id=e.name) for e in examples() if e.language == language]


def test_the_docs_have_examples_of_each_kind() -> None:
    kinds = {e.language for e in examples()}
    assert kinds == {"shell", "sql", "toml", "python", "json"}


@pytest.mark.parametrize("example", of("toml"))
def test_toml_is_a_valid_syncline_toml(example: Example, tmp_path: Path) -> None:
    config = tmp_path / "syncline.toml"
    config.write_text(example.text)
    tomllib.loads(example.text)
    build_sync_config(load_settings(config))  # settings, rules and namespaces


@pytest.mark.parametrize("example", of("json"))
def test_json_parses(example: Example) -> None:
    json.loads(example.text)


def _commands(text: str) -> list[list[str]]:
    """The shell commands of a block: continuation lines joined, comments and env dropped."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]
        if words:
            commands.append(words)
    return commands


@pytest.mark.parametrize("example", of("shell"))
def test_shell_parses_and_names_real_commands(example: Example) -> None:
    parsed = subprocess.run(["bash", "-n"], input=example.text, text=True, capture_output=True)
    assert parsed.returncode == 0, parsed.stderr
    for command in _commands(example.text):
        if command[0] == "bash" and len(command) > 1:
            assert (ROOT / command[1]).is_file(), f"{example.name}: no {command[1]}"
        if command[0] != "syncline":
            continue
        args = command[1:]
        # --help before any `--`: syncline checks the command and its options, runs nothing.
        cut = args.index("--") if "--" in args else len(args)
        result = CliRunner().invoke(app, [*args[:cut], "--help"])
        assert result.exit_code == 0, f"{example.name}: {shlex.join(command)}\n{result.output}"


@pytest.fixture
async def server(schema_url: str) -> AsyncIterator[LiveServer]:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute(SQL_PREREQUISITES)
    live = await start_live_server(schema_url, api_key=API_KEY)
    try:
        yield live
    finally:
        await stop_live_server(live)


@pytest.mark.parametrize("example", of("sql"))
async def test_sql_runs(example: Example, server: LiveServer) -> None:
    async with await psycopg.AsyncConnection.connect(server.database_url, autocommit=True) as c:
        await c.execute(example.text.encode())


@pytest.mark.parametrize("example", of("python"))
async def test_python_runs(example: Example, server: LiveServer, tmp_path: Path) -> None:
    """In a directory like the one `syncline up` ran in (its data dir holds api.key)."""
    (tmp_path / ".syncline").mkdir()
    (tmp_path / ".syncline" / "api.key").write_text(API_KEY + "\n")
    code = example.text.replace(DEFAULT_HTTP, server.http_url).replace(DEFAULT_WS, server.ws_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
    # A process of its own: the server runs in this event loop, which must not block.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"{example.name}\n{stderr.decode()}"
