"""The chat's message bookkeeping (dedupe by id, optimistic messages, versions, "seen by") on
plain data, in Node's test runner: message_store.test.mjs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("message_store.test.mjs")


def test_message_store() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: scripts/test.sh installs it")
    result = subprocess.run(
        [node, "--test", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
    assert "# pass 8" in result.stdout
