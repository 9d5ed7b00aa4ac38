"""The one error type of the application services (chat, orders), mapped to HTTP and RPC."""

from __future__ import annotations


class AppError(Exception):
    """A refused request: an HTTP-like status (also the RPC error code) and a machine code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str = "room") -> AppError:
    """The answer for a missing thing and for one the caller may not see (no existence leak)."""
    return AppError(404, "not_found", f"{what} not found")
