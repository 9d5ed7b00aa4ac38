"""Migrations run in a child process, so that Alembic and SQLAlchemy never load in the server.

They cost the long-running `syncline up` process about 30 MB of RSS for a job done once at
start: the child applies them and exits.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from syncline.errors import SynclineError


def _upgrade(url: str) -> str | None:
    from syncline.db import migrate

    try:
        migrate.upgrade(url)
    except SynclineError as err:
        return str(err)
    return None


def upgrade_in_child(url: str) -> None:
    """Apply every pending migration from a spawned process; a failure is a SynclineError."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        error = pool.submit(_upgrade, url).result()
    if error is not None:
        raise SynclineError(error)
