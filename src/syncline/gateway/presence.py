"""Who is in a channel right now: clients keyed by id, users counted once however many tabs."""

from __future__ import annotations

from collections import Counter

from syncline.core.log import ClientInfo


class PresenceRegistry:
    """In-memory presence of this gateway's connections, per channel."""

    def __init__(self) -> None:
        self._clients: dict[str, dict[str, ClientInfo]] = {}
        self._users: dict[str, Counter[str]] = {}

    def add(self, channel: str, info: ClientInfo) -> None:
        clients = self._clients.setdefault(channel, {})
        if info.client in clients:
            return
        clients[info.client] = info
        self._users.setdefault(channel, Counter())[info.user] += 1

    def remove(self, channel: str, client: str) -> ClientInfo | None:
        clients = self._clients.get(channel)
        if not clients or client not in clients:
            return None
        info = clients.pop(client)
        users = self._users[channel]
        users[info.user] -= 1
        if users[info.user] <= 0:
            del users[info.user]
        if not clients:
            del self._clients[channel]
            del self._users[channel]
        return info

    def clients(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._clients.get(channel, {}))

    def stats(self, channel: str) -> tuple[int, int]:
        """(number of clients, number of distinct users)."""
        return len(self._clients.get(channel, {})), len(self._users.get(channel, {}))
