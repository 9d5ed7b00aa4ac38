"""Presence in Redis, shared by every process: per channel a hash, an expiry zset, user counts.

Follows Centrifugo's Redis presence. Per channel, three keys sharing the hash tag of the
channel (so they live in one Redis Cluster slot and one script may touch all three):

- ``<prefix>:presence:{channel}`` a hash, client id → the client's info as JSON:
  ``{"user":…,"client":…,"conn_len":N,"conn_info":<raw>,"chan_info":<raw>}``, where the raw
  fields are the ClientInfo's already-encoded JSON bytes, embedded as they are (absent keys
  for None; ``conn_len`` says where conn_info ends, so both decode back byte for byte).
- ``<prefix>:presence:exp:{channel}`` a sorted set, client id → expire-at (Unix ms, by
  Redis's clock, so that processes with skewed clocks agree).
- ``<prefix>:presence:users:{channel}`` a hash, user (as its JSON string) → number of the
  channel's clients of that user, so that ``stats`` is two HLENs, not a scan (for 1,000
  clients ~20 µs of Redis time, against ~1.2 ms to count distinct users from the hash).

Every change goes through one of three Lua scripts, which keep the user counts equal to what
the client hash holds: ADD (HSET, ZADD, count the user if the client is new), REMOVE, and
READ, which first drops the expired clients (ZRANGEBYSCORE, HDEL, uncount, ZREMRANGEBYSCORE)
and then answers with the hash or the two counts. The three keys share one expiry, always
beyond every entry's expire-at (ADD sets it to KEY_TTL_FACTOR times the entry TTL whenever it
is closer than one TTL), so a channel nobody reads again does not stay in Redis.
A process that dies leaves its clients behind until their expire-at: no read returns them
after it, whichever process reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from syncline.core.log import ClientInfo
from syncline.logs import get_logger
from syncline.presence.base import DEFAULT_PRESENCE_TTL_S
from syncline.redis_url import hash_tag, redis_client, script_sha

log = get_logger(__name__)

DEFAULT_PREFIX = "syncline"

# The keys of a channel expire this many entry TTLs after its last add. Entries expire by
# their expire-at, which reads enforce; the key expiry only removes the channels nobody reads
# again, and outliving the newest entry keeps it from ever being the thing that decides.
KEY_TTL_FACTOR = 2

# A script holds Redis for its whole run, so a big refresh is cut into ADD calls of at most
# this many clients (~3 µs each measured) and this many channels (~10 µs each, the key
# expiries): about 1.5 ms of Redis time a call at most.
MAX_CLIENTS_PER_SCRIPT = 500
MAX_CHANNELS_PER_SCRIPT = 100

# Script calls per round trip in ``add_many``: a refresh of thousands of channels is sent in
# pipelines of this many, which bounds the replies held in memory at once.
PIPELINE_SIZE = 500

# How long a command (or connecting) may take before the store reports Redis unavailable.
COMMAND_TIMEOUT_S = 5.0

# Every command here is idempotent (add refreshes, remove and read converge), so the client
# library retries a dropped connection: a restarted Redis costs a retry, not an error.
RETRIES = 3
RETRY_BACKOFF_BASE_S = 0.05
RETRY_BACKOFF_CAP_S = 0.5

_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
    OSError,
)

# The user of a stored info is the JSON string right after '{"user":'. That string can hold
# no unescaped '"', so the first ',"client":' after it is where it ends, whatever the client
# put in its info fields.

# KEYS: for each channel its hash, zset and users (three keys a channel, all of one slot in
# a cluster). ARGV: [1] entry TTL ms, [2] key TTL ms, then for each channel the number n of
# its clients followed by n triples: client id, user as a JSON string, encoded info. One
# call serves many channels, so the periodic refresh is a few calls, not one a channel; an
# unchanged info (the refresh) only moves the expire-at.
ADD: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entry_ttl = tonumber(ARGV[1])
local expire_at = now + entry_ttl
local key_ttl = tonumber(ARGV[2])
local a = 3
for k = 1, #KEYS, 3 do
  local clients, expiry, users = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local last = a + 3 * tonumber(ARGV[a])
  local changed = false
  for i = a + 1, last, 3 do
    local client, user, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local old = redis.call('HGET', clients, client)
    if old ~= value then
      changed = true
      if not old then
        redis.call('HINCRBY', users, user, 1)
      else
        local old_user = string.match(old, '^{"user":(.-),"client":')
        if old_user ~= user then
          if old_user and redis.call('HINCRBY', users, old_user, -1) <= 0 then
            redis.call('HDEL', users, old_user)
          end
          redis.call('HINCRBY', users, user, 1)
        end
      end
      redis.call('HSET', clients, client, value)
    end
    redis.call('ZADD', expiry, expire_at, client)
  end
  a = last + 1
  -- The three keys always get one expiry together. A pure refresh leaves it alone while it
  -- is still beyond the new expire-at (most refreshes: the key TTL is twice the entry TTL).
  local left = redis.call('PTTL', clients)
  if changed or left <= entry_ttl then
    local ttl = math.max(key_ttl, left)
    redis.call('PEXPIRE', clients, ttl)
    redis.call('PEXPIRE', expiry, ttl)
    redis.call('PEXPIRE', users, ttl)
  end
end
return 1
"""

# KEYS: hash, zset, users. ARGV: [1] client id. Returns 1 if the client was there.
REMOVE: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local user = string.match(old, '^{"user":(.-),"client":')
if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
  redis.call('HDEL', KEYS[3], user)
end
return 1
"""

# KEYS: hash, zset, users. ARGV: [1] 'c' for the clients (flat HGETALL reply), 's' for the
# stats ({clients, users}). Expired clients are dropped first, in the same atomic step.
READ: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  for _, client in ipairs(expired) do
    local old = redis.call('HGET', KEYS[1], client)
    if old then
      redis.call('HDEL', KEYS[1], client)
      local user = string.match(old, '^{"user":(.-),"client":')
      if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
        redis.call('HDEL', KEYS[3], user)
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
if ARGV[1] == 's' then
  return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[3])}
end
return redis.call('HGETALL', KEYS[1])
"""

_SHA = {source: script_sha(source) for source in (ADD, REMOVE, READ)}


def presence_keys(prefix: str, channel: str) -> tuple[str, str, str]:
    """The client hash, the expiry sorted set and the user-count hash of ``channel``."""
    tag = hash_tag(channel)
    return (
        f"{prefix}:presence:{{{tag}}}",
        f"{prefix}:presence:exp:{{{tag}}}",
        f"{prefix}:presence:users:{{{tag}}}",
    )


_USER = b'{"user":'
_CLIENT = b',"client":'
_CONN_LEN = b',"conn_len":'
_CONN = b',"conn_info":'
_CHAN = b',"chan_info":'


def encode_info(info: ClientInfo) -> tuple[bytes, bytes]:
    """(the user as a JSON string, the stored value); see the module docstring."""
    user = orjson.dumps(info.user)
    parts = [_USER, user, _CLIENT, orjson.dumps(info.client)]
    conn, chan = info.conn_info, info.chan_info
    if conn is not None:
        parts += [_CONN_LEN, b"%d" % len(conn), _CONN, conn]
    if chan is not None:
        parts += [_CHAN, chan]
    parts.append(b"}")
    return user, b"".join(parts)


def decode_info(value: bytes) -> ClientInfo:
    """The ClientInfo ``encode_info`` stored; raises ValueError for anything else."""
    if not value.startswith(_USER) or not value.endswith(b"}"):
        raise ValueError("not a presence entry")
    end = len(value) - 1
    user_end = value.find(_CLIENT)
    if user_end < 0:
        raise ValueError("a presence entry without a client")
    start = user_end + len(_CLIENT)
    # A JSON string holds no unescaped '"': the first ',"' after the client id ends it.
    client_end = value.find(b',"', start)
    if client_end < 0:
        client_end = end
    try:
        user = orjson.loads(value[len(_USER) : user_end])
        client = orjson.loads(value[start:client_end])
    except orjson.JSONDecodeError as err:
        raise ValueError(f"a presence entry with a bad user or client: {err}") from None
    if not isinstance(user, str) or not isinstance(client, str):
        raise ValueError("a presence entry's user and client are strings")
    at = client_end
    conn: bytes | None = None
    chan: bytes | None = None
    if value.startswith(_CONN_LEN, at):
        len_start = at + len(_CONN_LEN)
        len_end = value.find(_CONN, len_start)
        if len_end < 0:
            raise ValueError("a presence entry with conn_len but no conn_info")
        conn_start = len_end + len(_CONN)
        try:
            conn_end = conn_start + int(value[len_start:len_end])
        except ValueError:
            raise ValueError("a presence entry with a bad conn_len") from None
        if not conn_start <= conn_end <= end:
            raise ValueError("a presence entry's conn_info is cut short")
        conn = value[conn_start:conn_end]
        at = conn_end
    if value.startswith(_CHAN, at):
        chan = value[at + len(_CHAN) : end]
    elif at != end:
        raise ValueError("a presence entry with trailing bytes")
    return ClientInfo(user, client, conn, chan)


@dataclass(slots=True)
class _Script:
    """One ADD call being assembled by ``add_many``."""

    keys: list[str]
    args: list[Any]
    clients: int = 0


class PresenceUnavailableError(ConnectionError):
    """Redis could not be reached or did not answer in time."""


class RedisPresenceStore:
    """A ``PresenceStore`` in Redis, standalone or cluster; see the module docstring."""

    def __init__(self, url: str, *, cluster: bool = False, prefix: str = DEFAULT_PREFIX) -> None:
        """Connect lazily to ``url`` (redis-py's URL syntax, ``redis://`` or ``rediss://``)."""
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must be non-empty and free of braces")
        self._prefix = prefix
        self._cluster = cluster
        retry = Retry(ExponentialBackoff(RETRY_BACKOFF_CAP_S, RETRY_BACKOFF_BASE_S), RETRIES)
        self._client: Redis | RedisCluster
        timeouts: dict[str, float] = {"socket_timeout": COMMAND_TIMEOUT_S}
        if not cluster:
            timeouts["socket_connect_timeout"] = COMMAND_TIMEOUT_S
        self._client = redis_client(url, cluster=cluster, retry=retry, **timeouts)
        self._closed = False

    async def add(
        self, channel: str, info: ClientInfo, ttl_s: float = DEFAULT_PRESENCE_TTL_S
    ) -> None:
        self._check_open()
        user, value = encode_info(info)
        ttl_ms, key_ttl_ms = _ttls(ttl_s)
        keys = presence_keys(self._prefix, channel)
        await self._eval(ADD, keys, [ttl_ms, key_ttl_ms, 1, info.client, user, value])

    async def add_many(
        self, entries: Sequence[tuple[str, ClientInfo]], ttl_s: float = DEFAULT_PRESENCE_TTL_S
    ) -> None:
        """ADD calls of up to MAX_CLIENTS_PER_SCRIPT clients and MAX_CHANNELS_PER_SCRIPT
        channels (of one slot in a cluster), sent PIPELINE_SIZE calls a round trip."""
        self._check_open()
        ttl_ms, key_ttl_ms = _ttls(ttl_s)
        by_channel: dict[str, list[Any]] = {}
        for channel, info in entries:
            user, value = encode_info(info)
            by_channel.setdefault(channel, []).extend((info.client, user, value))
        # Per slot (one group in all for a standalone Redis): the scripts being filled.
        scripts: list[_Script] = []
        filling: dict[int, _Script] = {}
        step = 3 * MAX_CLIENTS_PER_SCRIPT
        for channel, triples in by_channel.items():
            keys = presence_keys(self._prefix, channel)
            slot = key_slot(keys[0].encode()) if self._cluster else 0
            for start in range(0, len(triples), step):
                part = triples[start : start + step]
                script = filling.get(slot)
                if (
                    script is None
                    or script.clients + len(part) // 3 > MAX_CLIENTS_PER_SCRIPT
                    or len(script.keys) >= 3 * MAX_CHANNELS_PER_SCRIPT
                ):
                    script = filling[slot] = _Script([], [ttl_ms, key_ttl_ms])
                    scripts.append(script)
                script.keys.extend(keys)
                script.args.append(len(part) // 3)
                script.args.extend(part)
                script.clients += len(part) // 3
        for start in range(0, len(scripts), PIPELINE_SIZE):
            await self._pipeline(scripts[start : start + PIPELINE_SIZE])

    async def remove(self, channel: str, client: str) -> None:
        self._check_open()
        await self._eval(REMOVE, presence_keys(self._prefix, channel), [client])

    async def clients(self, channel: str) -> dict[str, ClientInfo]:
        self._check_open()
        reply = await self._eval(READ, presence_keys(self._prefix, channel), ["c"])
        found: dict[str, ClientInfo] = {}
        for i in range(0, len(reply), 2):
            try:
                info = decode_info(reply[i + 1])
            except ValueError as err:
                # Written by another version, or by hand: skip it rather than fail the read.
                log.warning("presence_entry_undecodable", channel=channel, error=str(err))
                continue
            found[info.client] = info
        return found

    async def stats(self, channel: str) -> tuple[int, int]:
        self._check_open()
        num_clients, num_users = await self._eval(READ, presence_keys(self._prefix, channel), ["s"])
        return int(num_clients), int(num_users)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()

    # -- plumbing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the presence store is closed")

    async def _eval(self, source: str, keys: Sequence[str], args: list[Any]) -> Any:
        client = self._client
        try:
            try:
                return await client.evalsha(_SHA[source], len(keys), *keys, *args)
            except NoScriptError:
                # A restarted Redis (or a failover) has an empty script cache; NOSCRIPT means
                # the script did not run, so running it again is safe.
                await self._load_scripts()
                return await client.evalsha(_SHA[source], len(keys), *keys, *args)
        except _UNAVAILABLE as err:
            raise PresenceUnavailableError(str(err)) from err

    async def _pipeline(self, scripts: Sequence[_Script]) -> None:
        """Run ``scripts`` in one round trip (one per node in a cluster)."""
        sha = _SHA[ADD]
        try:
            for attempt in range(2):
                async with self._client.pipeline(transaction=False) as pipe:
                    for script in scripts:
                        pipe.evalsha(sha, len(script.keys), *script.keys, *script.args)
                    replies = await pipe.execute(raise_on_error=False)
                failed = [r for r in replies if isinstance(r, Exception)]
                if not failed:
                    return
                if attempt == 0 and all(isinstance(r, NoScriptError) for r in failed):
                    # ADD is idempotent: running the whole batch again is harmless.
                    await self._load_scripts()
                    continue
                raise failed[0]
        except _UNAVAILABLE as err:
            raise PresenceUnavailableError(str(err)) from err

    async def _load_scripts(self) -> None:
        for source in (ADD, REMOVE, READ):
            await self._client.script_load(source)  # a cluster loads it on every primary


def _ttls(ttl_s: float) -> tuple[int, int]:
    """(entry TTL, key TTL) in ms."""
    if ttl_s <= 0:
        raise ValueError("a presence TTL must be positive")
    ttl_ms = max(1, round(ttl_s * 1000))
    return ttl_ms, KEY_TTL_FACTOR * ttl_ms
