"""A Python client of the server HTTP API, for backends: publish, presence, history, disconnect.

    from syncline.server_api import ServerAPI
    api = ServerAPI("http://127.0.0.1:8000", api_key="...")
    api.publish("orders", {"refresh": True})

`AsyncServerAPI` has the same methods as coroutines.
"""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 10.0


class ServerAPIError(Exception):
    """The server refused a call: HTTP status, error code and message from its JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


def _result(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or "result" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise ServerAPIError(
                response.status_code, str(error.get("code")), str(error.get("message"))
            )
        raise ServerAPIError(response.status_code, "bad_response", response.text[:200])
    result: dict[str, Any] = body["result"]
    return result


def _optional(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value not in (None, "")}


class _Requests:
    """The method → body mapping both clients share."""

    @staticmethod
    def publish(channel: str, data: Any) -> tuple[str, dict[str, Any]]:
        return "publish", {"channel": channel, "data": data}

    @staticmethod
    def broadcast(channels: list[str], data: Any) -> tuple[str, dict[str, Any]]:
        return "broadcast", {"channels": channels, "data": data}

    @staticmethod
    def history(
        channel: str, limit: int, since: tuple[int, str] | None, reverse: bool
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"channel": channel, "limit": limit, "reverse": reverse}
        if since is not None:
            body["since"] = {"offset": since[0], "epoch": since[1]}
        return "history", body


class ServerAPI:
    """Blocking client; one HTTP connection pool, closed by close() or a with block."""

    def __init__(self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/server",
            headers={"X-API-Key": api_key},
            timeout=timeout,
        )

    def __enter__(self) -> ServerAPI:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any method by name, e.g. call("presence", {"channel": "room:1"})."""
        return _result(self._http.post(f"/{method}", json=body or {}))

    def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return self.call(*_Requests.publish(channel, data))

    def broadcast(self, channels: list[str], data: Any) -> dict[str, Any]:
        return self.call(*_Requests.broadcast(channels, data))

    def history(
        self,
        channel: str,
        limit: int = 0,
        since: tuple[int, str] | None = None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        return self.call(*_Requests.history(channel, limit, since, reverse))

    def presence(self, channel: str) -> dict[str, Any]:
        return self.call("presence", {"channel": channel})

    def presence_stats(self, channel: str) -> dict[str, Any]:
        return self.call("presence_stats", {"channel": channel})

    def channels(self, pattern: str = "") -> dict[str, Any]:
        return self.call("channels", _optional(pattern=pattern))

    def unsubscribe(self, channel: str, user: str, client: str = "") -> dict[str, Any]:
        return self.call("unsubscribe", _optional(channel=channel, user=user, client=client))

    def disconnect(self, user: str, client: str = "", code: int | None = None) -> dict[str, Any]:
        body = _optional(user=user, client=client)
        if code is not None:
            body["disconnect"] = {"code": code}
        return self.call("disconnect", body)

    def info(self) -> dict[str, Any]:
        return self.call("info")


class AsyncServerAPI:
    """The same calls for asyncio code."""

    def __init__(self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/api/server",
            headers={"X-API-Key": api_key},
            timeout=timeout,
        )

    async def __aenter__(self) -> AsyncServerAPI:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return _result(await self._http.post(f"/{method}", json=body or {}))

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return await self.call(*_Requests.publish(channel, data))

    async def broadcast(self, channels: list[str], data: Any) -> dict[str, Any]:
        return await self.call(*_Requests.broadcast(channels, data))

    async def history(
        self,
        channel: str,
        limit: int = 0,
        since: tuple[int, str] | None = None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        return await self.call(*_Requests.history(channel, limit, since, reverse))

    async def presence(self, channel: str) -> dict[str, Any]:
        return await self.call("presence", {"channel": channel})

    async def presence_stats(self, channel: str) -> dict[str, Any]:
        return await self.call("presence_stats", {"channel": channel})

    async def channels(self, pattern: str = "") -> dict[str, Any]:
        return await self.call("channels", _optional(pattern=pattern))

    async def unsubscribe(self, channel: str, user: str, client: str = "") -> dict[str, Any]:
        return await self.call("unsubscribe", _optional(channel=channel, user=user, client=client))

    async def disconnect(
        self, user: str, client: str = "", code: int | None = None
    ) -> dict[str, Any]:
        body = _optional(user=user, client=client)
        if code is not None:
            body["disconnect"] = {"code": code}
        return await self.call("disconnect", body)

    async def info(self) -> dict[str, Any]:
        return await self.call("info")
