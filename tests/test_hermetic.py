"""The suite is hermetic: what the developer runs in the checkout cannot reach the tests."""

from __future__ import annotations

import os
from pathlib import Path

from syncline.settings import load_settings

CHECKOUT = Path(__file__).resolve().parents[1]


def test_tests_run_outside_the_checkout_without_its_environment() -> None:
    cwd = Path.cwd().resolve()
    assert cwd != CHECKOUT and CHECKOUT not in cwd.parents
    assert not Path("syncline.toml").exists()
    assert not [k for k in os.environ if k.startswith("SYNCLINE_") or k == "DATABASE_URL"]
    settings = load_settings(None)
    assert settings.rules == [] and settings.namespaces == {}
    assert (settings.port, settings.gateway_port) == (8000, 8001)
