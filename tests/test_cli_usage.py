"""The CLI's surface as a newcomer meets it: --version, config, psql arguments, quiet reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from syncline import __version__
from syncline.cli import app
from syncline.keys import api_key, jwt_secret
from syncline.settings import load_settings

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    clean_env.chdir(tmp_path)
    return tmp_path


def invoke(*args: str, **env: str) -> Result:
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **env})


def test_version_prints_the_version(workdir: Path) -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"syncline {__version__}"


def test_config_shows_generated_keys_rules_and_namespaces(workdir: Path) -> None:
    (workdir / "syncline.toml").write_text(
        '[[rules]]\ntable = "tasks"\nchannel = "team:{team_id}"\ncolumns = ["id", "team_id"]\n'
        '\n[namespaces.team]\nsubscribe = "authenticated"\n'
    )
    data_dir = (workdir / ".syncline").resolve()
    before = json.loads(invoke("config", "--json").stdout)
    assert before["jwt_secret"].startswith("unset, generated at the first `syncline up` in")
    assert not data_dir.exists()  # `config` reads, it never makes keys

    settings = load_settings(None)
    jwt_secret(settings)
    api_key(settings)
    result = invoke("config", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["jwt_secret"] == f"set, generated in {data_dir / 'jwt.key'}"
    assert data["api_key"] == f"set, generated in {data_dir / 'api.key'}"
    sources = [(r["table"], r["source"]) for r in data["rules"]]
    assert sources.count(("public.orders", "built in")) == 1
    assert ("public.tasks", "syncline.toml") in sources
    assert len(sources) == 5
    assert data["namespaces"]["room"]["source"] == "built in"
    assert data["namespaces"]["room"]["subscribe"] == "membership"
    assert data["namespaces"]["team"] == {"source": "syncline.toml"}

    text = invoke("config").stdout
    assert f'jwt_secret = "set, generated in {data_dir / "jwt.key"}"' in text
    assert "[[rules]]  # built in" in text and "[[rules]]  # syncline.toml" in text
    assert "[namespaces.user]  # built in" in text


def test_config_with_database_url_says_what_is_missing(workdir: Path) -> None:
    result = invoke("config", DATABASE_URL="postgresql://app:hunter2@db.internal/app")
    assert result.exit_code == 0, result.output
    assert 'jwt_secret = "unset: required with DATABASE_URL"' in result.stdout
    assert 'api_key = "unset: the server API is off"' in result.stdout
    secret = "k" * 40
    shown = invoke("config", SYNCLINE_API_KEY=secret).stdout
    assert secret not in shown and 'api_key = "********"' in shown


def test_psql_passes_what_follows_double_dash(workdir: Path, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
    result = subprocess.run(
        [sys.executable, "-m", "syncline", "psql", "--", "-At", "-c", "select 41 + 1"],
        cwd=workdir,
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_doctor_prints_its_checks_and_no_library_logs(workdir: Path, schema_url: str) -> None:
    result = invoke("doctor", DATABASE_URL=schema_url)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith("ok   PostgreSQL")


def test_help_shows_no_type_after_flags(workdir: Path) -> None:
    result = invoke("sync", "list", "--help")
    assert result.exit_code == 0, result.output
    assert "--json" in result.stdout and "<bool>" not in result.stdout
    assert "<path>" in result.stdout  # options that take a value keep their type


def test_sync_list_keeps_words_whole_at_80_columns(workdir: Path) -> None:
    for columns in ("80", "200"):
        result = invoke("sync", "list", COLUMNS=columns)
        assert result.exit_code == 0, result.output
        words = set(result.stdout.replace(",", " ").split())
        assert {"public.messages", "public.room_members", "last_read_message_id"} <= words
        assert "client_msg_id" in words and "…" not in result.stdout


def test_errors_are_one_clean_line(workdir: Path) -> None:
    (workdir / "syncline.toml").write_text(
        '[[rules]]\ntable = "a"\nchannel = "nowhere:{x}"\ncolumns = "*"\n'
        '[[rules]]\ntable = "b"\nchannel = "zz:{y}"\ncolumns = "*"\n'
    )
    listed = invoke("sync", "list")
    assert listed.exit_code == 2
    assert listed.stderr.startswith("error: invalid sync rules: rule public.a → nowhere:{x}: ")
    assert "; rule public.b → zz:{y}: " in listed.stderr
    assert listed.stderr.count("\n") == 1 and " - " not in listed.stderr
    (workdir / "syncline.toml").unlink()
    added = invoke("sync", "add", "t", "--channel", "t", "--columns", "id,password")
    assert added.stderr.startswith("error: invalid rule: columns: column 'password' can never")
