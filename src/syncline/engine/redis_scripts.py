"""The Redis engine's data model: key names, Lua scripts and the encoding of what they store.

Per channel (all three names share the hash tag ``{channel}``, so one channel lives in one
Redis Cluster slot and a script may touch all of it):

- ``<prefix>:s:{channel}`` a stream: one entry per kept publication, ID ``<offset>-0``, fields
  ``t`` (append time, Unix ms, Redis's clock) and ``b`` (the body: publisher info and data);
  ``XADD MAXLEN`` = history size, ``PEXPIRE`` = history TTL.
- ``<prefix>:m:{channel}`` a hash, the channel's meta: ``e`` epoch, ``o`` top offset, ``p``
  last commit position (fixed-width digits, so that string order is position order), ``t``
  history TTL in ms (reads drop entries older than that), ``r`` run id of the Redis server
  that appended last. It expires after the meta TTL, never before the stream.
- ``<prefix>:p:{channel}`` the pub/sub topic (a shard channel in cluster mode).

A pub/sub message is ``<offset> <time_ms> <epoch> <body>``: all a receiving process needs to
deliver without another round trip. A body is ``<info length> <info><data>``.
"""

from __future__ import annotations

from typing import Final

from syncline.core.changes import CommitPosition
from syncline.core.log import ClientInfo, Publication
from syncline.redis_url import hash_tag, script_sha

# The append script: one call appends a whole batch (of one slot in cluster mode).
#
# KEYS: for channel j (1-based), KEYS[2j-1] its stream and KEYS[2j] its meta hash.
# ARGV: [1] an epoch for the channels that have none, [2] meta TTL ms, [3] "1" for sharded
# pub/sub, [4] "1" when Redis persistence loses no acknowledged write (AOF, fsync always),
# [5] n, the number of channels, [6 .. 5+n] their topics, then five per item: channel index j,
# history size, history TTL ms, commit position ('' for none), body.
# Returns {now_ms, offset per item (0: dropped as already appended)}.
#
# An epoch is kept only while the stream can be trusted to hold everything it ever gave out:
# meta gone (expired, evicted, or Redis lost its data) means a new epoch and the old stream is
# deleted; so does a Redis that restarted (another run id) without durable persistence, since
# it may have lost the last appends that clients already saw, and reusing their offsets for
# other publications would be a silent divergence. Reads need no such check: a client ahead of
# the restored top is refused, and one behind it gets publications that really were appended.
APPEND: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d', now)
local new_epoch = ARGV[1]
local meta_ttl = tonumber(ARGV[2])
local publish = ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH'
local durable = ARGV[4] == '1'
local n = tonumber(ARGV[5])
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local epochs, tops, lasts, ttls, added, cleared = {}, {}, {}, {}, {}, {}
for j = 1, n do
  local m = redis.call('HMGET', KEYS[2 * j], 'e', 'o', 'p', 't', 'r')
  if m[1] and (durable or m[5] == run) then
    epochs[j] = m[1]
    tops[j] = tonumber(m[2])
  else
    epochs[j] = new_epoch
    tops[j] = 0
    redis.call('DEL', KEYS[2 * j - 1])
  end
  lasts[j] = m[3] or ''
  ttls[j] = tonumber(m[4] or '0')
end
local out = {now}
local i = 6 + n
while i <= #ARGV do
  local j = tonumber(ARGV[i])
  local size = tonumber(ARGV[i + 1])
  local ttl = tonumber(ARGV[i + 2])
  local pos = ARGV[i + 3]
  if pos ~= '' and lasts[j] ~= '' and pos <= lasts[j] then
    out[#out + 1] = 0
  else
    local top = tops[j] + 1
    if top > 9007199254740991 then
      return redis.error_reply('offset space exhausted for ' .. KEYS[2 * j])
    end
    tops[j] = top
    if pos ~= '' then lasts[j] = pos end
    local id = string.format('%d', top)
    local stream = KEYS[2 * j - 1]
    if size > 0 and ttl > 0 then
      local ok = redis.pcall('XADD', stream, 'MAXLEN', size, id, 't', now_s, 'b', ARGV[i + 4])
      if type(ok) == 'table' and ok.err then
        if not string.find(ok.err, 'equal or smaller', 1, true) then
          return redis.error_reply(ok.err)  -- OOM, say: nothing was written before it
        end
        -- Entries above the top cannot be ours: start the stream over rather than fail.
        redis.call('DEL', stream)
        redis.call('XADD', stream, 'MAXLEN', size, id, 't', now_s, 'b', ARGV[i + 4])
      end
      added[j] = ttl
    elseif added[j] or not cleared[j] then
      redis.call('DEL', stream)
      cleared[j] = true
      added[j] = nil
    end
    ttls[j] = (size > 0 and ttl > 0) and ttl or 0
    redis.call(publish, ARGV[5 + j], id .. ' ' .. now_s .. ' ' .. epochs[j] .. ' ' .. ARGV[i + 4])
    out[#out + 1] = top
  end
  i = i + 5
end
for j = 1, n do
  local meta = KEYS[2 * j]
  redis.call('HSET', meta, 'e', epochs[j], 'o', tops[j], 'p', lasts[j], 't', ttls[j], 'r', run)
  redis.call('PEXPIRE', meta, math.max(meta_ttl, ttls[j]))
  if added[j] then redis.call('PEXPIRE', KEYS[2 * j - 1], added[j]) end
end
return out
"""

# The read script: the channel's epoch and top, creating them when there are none, and
# optionally a range of the stream after dropping the entries older than the history TTL.
#
# KEYS: [1] stream, [2] meta. ARGV: [1] an epoch to create the meta with, [2] meta TTL ms,
# [3] the epoch the caller expects ('' any; on a mismatch no range is read), [4] '' (no
# range), 'f' (XRANGE) or 'r' (XREVRANGE), [5] start, [6] end, [7] count (0: all).
# Returns {epoch, top, entries}.
#
# Kept entries are always the offsets from the first one up to the top with no hole (appends
# add the next offset, MAXLEN trims the oldest, and anything else deletes the whole stream),
# and append times grow with offsets, so the expired entries are a prefix: a binary search
# over offsets finds where it ends, and XTRIM MINID removes it.
READ: Final = """
local stream, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'e', 'o', 't')
local epoch, top, ttl = m[1], tonumber(m[2] or '0'), tonumber(m[3] or '0')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', stream)
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  redis.call('HSET', meta, 'e', epoch, 'o', 0, 'p', '', 't', 0, 'r', run)
end
redis.call('PEXPIRE', meta, math.max(tonumber(ARGV[2]), ttl))
local op = ARGV[4]
if op == '' or (ARGV[3] ~= '' and ARGV[3] ~= epoch) then
  return {epoch, top, {}}
end
if ttl > 0 then
  local t = redis.call('TIME')
  local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - ttl
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first > 0 and tonumber(first[1][2][2]) <= cutoff then
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if tonumber(last[1][2][2]) <= cutoff then
      redis.call('DEL', stream)
    else
      -- lo: an expired offset, hi: a kept one.
      local lo = tonumber(string.match(first[1][1], '^%d+'))
      local hi = tonumber(string.match(last[1][1], '^%d+'))
      while hi - lo > 1 do
        local mid = math.floor((lo + hi) / 2)
        local e = redis.call('XRANGE', stream, string.format('%d', mid), string.format('%d', mid))
        if #e > 0 and tonumber(e[1][2][2]) > cutoff then hi = mid else lo = mid end
      end
      redis.call('XTRIM', stream, 'MINID', string.format('%d', hi))
    end
  end
end
local count = tonumber(ARGV[7])
local entries
if op == 'f' then
  if count > 0 then
    entries = redis.call('XRANGE', stream, ARGV[5], ARGV[6], 'COUNT', count)
  else
    entries = redis.call('XRANGE', stream, ARGV[5], ARGV[6])
  end
else
  if count > 0 then
    entries = redis.call('XREVRANGE', stream, ARGV[5], ARGV[6], 'COUNT', count)
  else
    entries = redis.call('XREVRANGE', stream, ARGV[5], ARGV[6])
  end
end
return {epoch, top, entries}
"""


APPEND_SHA: Final = script_sha(APPEND)
READ_SHA: Final = script_sha(READ)


def channel_keys(prefix: str, channel: str) -> tuple[str, str, str]:
    """The stream key, the meta key and the pub/sub topic of ``channel``."""
    tag = hash_tag(channel)
    return f"{prefix}:s:{{{tag}}}", f"{prefix}:m:{{{tag}}}", f"{prefix}:p:{{{tag}}}"


def position_text(position: CommitPosition | None) -> str:
    """A commit position as 40 digits, whose string order is the positions' order ('' none)."""
    if position is None:
        return ""
    return f"{position.commit:020d}{position.seq:020d}"


def encode_info(info: ClientInfo) -> bytes:
    """Length-prefixed, so that info fields may hold any bytes, spaces included."""
    user, client = info.user.encode(), info.client.encode()
    conn, chan = info.conn_info, info.chan_info
    head = b"%d %d %d %d " % (
        len(user),
        len(client),
        -1 if conn is None else len(conn),
        -1 if chan is None else len(chan),
    )
    return b"".join((head, user, client, conn or b"", chan or b""))


def decode_info(blob: bytes) -> ClientInfo:
    lu, lc, lconn, lchan, rest = blob.split(b" ", 4)
    user_end = int(lu)
    client_end = user_end + int(lc)
    conn_len, chan_len = int(lconn), int(lchan)
    conn_end = client_end + max(conn_len, 0)
    return ClientInfo(
        rest[:user_end].decode(),
        rest[user_end:client_end].decode(),
        None if conn_len < 0 else rest[client_end:conn_end],
        None if chan_len < 0 else rest[conn_end : conn_end + chan_len],
    )


def encode_body(data: bytes, info: ClientInfo | None) -> bytes:
    if info is None:
        return b"0 " + data
    blob = encode_info(info)
    return b"%d %b%b" % (len(blob), blob, data)


def decode_body(body: bytes) -> tuple[bytes, ClientInfo | None]:
    """The data and publisher info of a body (stream field ``b`` or a message's tail)."""
    length, _, rest = body.partition(b" ")
    if length == b"0":
        return rest, None
    size = int(length)
    return rest[size:], decode_info(rest[:size])


def encode_message(offset: int, time_ms: int, epoch: str, body: bytes) -> bytes:
    """A pub/sub message, as the append script builds it (used for ephemeral publications)."""
    return b"%d %d %b %b" % (offset, time_ms, epoch.encode(), body)


# A join or leave travels on the channel's topic like an ephemeral publication, with one of
# these in place of the offset (a publication's offset is always digits).
JOIN_MARK, LEAVE_MARK = b"J", b"L"


def encode_presence_message(time_ms: int, info: ClientInfo, joined: bool) -> bytes:
    """A join (or leave) of ``info``'s client, for the channel's pub/sub topic."""
    return b"%b %d  %b" % (JOIN_MARK if joined else LEAVE_MARK, time_ms, encode_body(b"", info))


def decode_presence_message(message: bytes) -> tuple[ClientInfo, bool] | None:
    """(info, joined) of a presence message; None for a publication."""
    mark = message[:1]
    if mark not in (JOIN_MARK, LEAVE_MARK):
        return None
    _, _, _, body = message.split(b" ", 3)
    _, info = decode_body(body)
    if info is None:
        raise ValueError("a presence message without client info")
    return info, mark == JOIN_MARK


def decode_message(message: bytes) -> tuple[str, Publication]:
    """The epoch and publication of a pub/sub message."""
    offset, time_ms, epoch, body = message.split(b" ", 3)
    data, info = decode_body(body)
    return epoch.decode(), Publication(int(offset), data, info, int(time_ms))


def decode_entry(entry: list[bytes | list[bytes]]) -> Publication:
    """A stream entry ``[b"<offset>-0", [b"t", time, b"b", body]]`` as a publication."""
    entry_id, fields = entry
    assert isinstance(entry_id, bytes) and isinstance(fields, list)
    data, info = decode_body(fields[3])
    return Publication(int(entry_id.partition(b"-")[0]), data, info, int(fields[1]))
