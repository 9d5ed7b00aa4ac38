"""Fossil delta compression of publications, as Centrifugo's ``delta: "fossil"`` subscriptions.

A subscriber that asked for delta (and whose namespace allows it, ``allowed_delta_types``)
gets every publication's data as a JSON *string* holding the JSON text: in full for the first
one, then, whenever it is shorter, as a fossil delta against the previous publication it got,
flagged ``delta: true``; the SDK applies it to the text it holds. A delta is only right against
the very data the client holds, so each publication carries a ``key`` and the ``base`` key it
was encoded against, and a connection sends the delta only to a subscriber whose last data has
that key: anything else (a fresh subscribe, a gap) gets the full text, which is always right.

Both encodings of a publication are made once per channel, not per subscriber (``DeltaStep``,
lazily); only a recovery replay is encoded for its one subscriber (``recovered_chain``).
The encodings here are the JSON format's (data as a JSON string); a Protobuf connection would
carry the same delta as raw bytes. See docs/protocol.md, "Delta compression".
"""

from __future__ import annotations

from collections.abc import Iterable

from fossil_delta import create_delta

from syncline.core.log import ClientInfo, Publication
from syncline.core.wire import RawJson, encode_pub_push, encode_publication, json_text

# What identifies a publication's data: (epoch, offset) in a stream; for publications without
# an offset, ("", -n) with n counted per channel by its DeltaChain.
PubKey = tuple[str, int]


def fossil_patch(base: bytes, target: bytes) -> str | None:
    """The fossil delta turning ``base`` into ``target``, if it is shorter than ``target``.

    None when it is not, or when it is not UTF-8 text: a delta copies literal runs of the
    target, and one cut inside a multi-byte character would not survive the SDKs, which
    re-encode the JSON string as UTF-8 before applying it.
    """
    patch: bytes = create_delta(base, target)
    if len(patch) >= len(target):
        return None
    try:
        return patch.decode("utf-8")
    except UnicodeDecodeError:
        return None


class DeltaStep:
    """One publication of a channel as delta subscribers get it; encoded once, on demand."""

    __slots__ = ("_base_data", "_channel", "_delta", "_full", "_info", "_pub", "base", "key")

    def __init__(
        self,
        channel: str,
        pub: Publication,
        key: PubKey,
        base: PubKey | None,
        base_data: bytes | None,
    ) -> None:
        self._channel = channel
        self._pub = pub
        self._info: ClientInfo | None = pub.info
        self.key = key
        self.base = base
        self._base_data = base_data
        self._full: bytes | None = None
        self._delta: bytes | None = None

    def full(self) -> bytes:
        """The ``pub`` push with the whole data as a JSON string (no ``delta`` flag)."""
        if self._full is None:
            pub = self._pub
            self._full = encode_pub_push(self._channel, json_text(pub.data), pub.offset, self._info)
        return self._full

    def frame_for(self, holds: PubKey | None) -> bytes:
        """The push for a subscriber whose last data has key ``holds`` (None: no data yet)."""
        if holds is None or holds != self.base:
            return self.full()
        if self._delta is None:
            pub, base_data = self._pub, self._base_data
            patch = None if base_data is None else fossil_patch(base_data, pub.data)
            if patch is None:
                self._delta = self.full()
            else:
                self._delta = encode_pub_push(
                    self._channel, RawJson.encode(patch), pub.offset, self._info, delta=True
                )
            self._base_data = None  # encoded: the base is not needed any more
        return self._delta


class DeltaChain:
    """The last publication of one channel, the base of the next one's delta."""

    __slots__ = ("_count", "_last_data", "_last_key")

    def __init__(self) -> None:
        self._last_key: PubKey | None = None
        self._last_data: bytes | None = None
        self._count = 0

    def seed(self, key: PubKey, data: bytes) -> None:
        """Start from a publication read elsewhere (a recovery), unless one came through."""
        if self._last_key is None:
            self._last_key, self._last_data = key, data

    def step(self, channel: str, epoch: str, pub: Publication) -> DeltaStep:
        """The next publication of the channel, in the order subscribers get them."""
        if pub.offset:
            key: PubKey = (epoch, pub.offset)
        else:
            self._count += 1
            key = ("", -self._count)
        step = DeltaStep(channel, pub, key, self._last_key, self._last_data)
        self._last_key, self._last_data = key, pub.data
        return step


def recovered_chain(pubs: Iterable[Publication]) -> list[RawJson]:
    """Recovered publications for a delta subscriber's subscribe reply, encoded for it alone:
    the first in full, each next one as a delta against the one before when shorter (as the
    Go server does)."""
    out: list[RawJson] = []
    previous: bytes | None = None
    for pub in pubs:
        patch = None if previous is None else fossil_patch(previous, pub.data)
        if patch is None:
            out.append(encode_publication(json_text(pub.data), pub.offset, pub.info))
        else:
            out.append(encode_publication(RawJson.encode(patch), pub.offset, pub.info, delta=True))
        previous = pub.data
    return out


def negotiate(asked: str, allowed: Iterable[str]) -> bool:
    """Whether a subscribe that asked for delta ``asked`` gets it: Centrifugo answers a type
    the namespace does not allow with a plain subscription (no error, no ``delta: true``)."""
    return bool(asked) and asked in allowed
