"""RPC method routing: applications register handlers by name and the gateway calls them.

A neutral module, so that applications never import the gateway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RpcContext:
    """Who is calling."""

    user: str
    client: str
    # The connection token's `info` claim (encoded JSON): what presence and pushes show of
    # the caller, stamped by the server, never taken from the call's data.
    conn_info: bytes | None = None


class RpcError(Exception):
    """An error reply for the caller: a protocol error code (or an app code ≥ 400)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


RpcHandler = Callable[[RpcContext, Any], Awaitable[Any]]


class RpcRegistry:
    """Method name → handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, RpcHandler] = {}

    def register(self, method: str, handler: RpcHandler) -> None:
        if method in self._handlers:
            raise ValueError(f"rpc method {method!r} is registered twice")
        self._handlers[method] = handler

    def get(self, method: str) -> RpcHandler | None:
        return self._handlers.get(method)
