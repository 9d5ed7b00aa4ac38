"""Errors meant for a person: one clear line, no traceback."""


class SynclineError(Exception):
    """A problem the user can act on; the CLI prints its message on one line and exits non-zero."""

    exit_code = 1


class ConfigError(SynclineError):
    """The settings or syncline.toml are invalid."""

    exit_code = 2
