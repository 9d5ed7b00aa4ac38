"""One channel a session receives, and where it stands in the channel's stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from syncline.core.delta import DeltaStep, PubKey
from syncline.core.namespaces import Namespace

# A live publication that arrived while the subscribe reply was being made:
# (epoch, offset, encoded push, its delta encodings or None).
Pending: TypeAlias = tuple[str, int, bytes, DeltaStep | None]


@dataclass(slots=True, eq=False)
class Subscription:
    """One channel a connection receives, and where it stands in the channel's stream."""

    channel: str
    namespace: Namespace
    server_side: bool = False
    positioned: bool = False  # continuity is checked and a gap unsubscribes with 2500
    epoch: str = ""
    offset: int = 0
    # Live publications that arrive while the subscribe reply is being built; None once live.
    pending: list[Pending] | None = field(default_factory=list)
    chan_info: bytes | None = None
    expires_at: int | None = None
    # Present in the channel (presence store): so a leave is announced only after a join.
    joined: bool = False
    # Fossil delta negotiated: publications go out as DeltaStep frames (data a JSON string).
    delta: bool = False
    # The key of the last publication data the client holds, the base a delta must have.
    delta_holds: PubKey | None = None
