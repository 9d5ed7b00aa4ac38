"""Request bodies of the server API in Centrifugo's layout (`POST /api/<method>`), field by field.

The names, types and defaults are those of Centrifugo's `apiproto` (internal/apiproto/api.proto
of centrifugal/centrifugo v6), so that `cent` and any other Centrifugo server-API client send
bodies these accept. As in Go's JSON decoder, fields this version does not know are ignored;
fields it knows but cannot honour (``tags``, ``b64data``…) are refused by the executor with
a 107 naming them, not silently dropped (see docs/topics/server-api.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from syncline.api.server_models import MAX_BROADCAST_CHANNELS
from syncline.apps.inputs import MAX_BIGINT, Input

# A user id as the gateway knows it: "" is the anonymous user, as in Centrifugo.
MAX_USER_LENGTH = 255
# Bounds a body that the request size limit would let through anyway: a batch of a thousand
# commands is already one request doing the work of a thousand.
MAX_BATCH_COMMANDS = 1000
MAX_CLIENT_LENGTH = 64
MAX_EXPIRE_AT = 2**53  # seconds: far past any real date, and exact in every JSON decoder

User = Annotated[str, Field(max_length=MAX_USER_LENGTH)]
ClientId = Annotated[str, Field(max_length=MAX_CLIENT_LENGTH)]


class Body(Input):
    """Strict types (a JSON number for an int…), unknown fields ignored as Go's decoder does."""

    model_config = ConfigDict(extra="ignore", strict=True)


class StreamPosition(Body):
    offset: int = Field(0, ge=0, le=MAX_BIGINT)
    epoch: str = Field("", max_length=64)


class PublishOptions(Body):
    """What publish and broadcast share besides the channel(s)."""

    data: Any = None
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str = ""
    delta: bool = False
    version: int = Field(0, ge=0, le=MAX_BIGINT)
    version_epoch: str = ""


class PublishBody(PublishOptions):
    channel: str = Field("", max_length=1024)


class BroadcastBody(PublishOptions):
    channels: list[str] = Field(default_factory=list, max_length=MAX_BROADCAST_CHANNELS)


class SubscribeBody(Body):
    channel: str = Field("", max_length=1024)
    user: User = ""
    expire_at: int = Field(0, ge=0, le=MAX_EXPIRE_AT)
    info: Any = None
    b64info: str = ""
    client: ClientId = ""
    session: str = ""
    data: Any = None
    b64data: str = ""
    recover_since: StreamPosition | None = None
    override: dict[str, Any] | None = None


class UnsubscribeBody(Body):
    channel: str = Field("", max_length=1024)
    user: User = ""
    client: ClientId = ""
    session: str = ""


class DisconnectReason(Body):
    code: int = Field(0, ge=0, le=2**32 - 1)
    reason: str = ""


class DisconnectBody(Body):
    user: User = ""
    disconnect: DisconnectReason | None = None
    client: ClientId = ""
    whitelist: list[str] = Field(default_factory=list)
    session: str = ""


class RefreshBody(Body):
    user: User = ""
    client: ClientId = ""
    expired: bool = False
    expire_at: int = Field(0, ge=0, le=MAX_EXPIRE_AT)
    info: Any = None
    session: str = ""


class ChannelBody(Body):
    """presence, presence_stats and history_remove: the channel only."""

    channel: str = Field("", max_length=1024)


class HistoryBody(Body):
    channel: str = Field("", max_length=1024)
    limit: int = Field(0, ge=-1, le=2**31 - 1)
    since: StreamPosition | None = None
    reverse: bool = False


class ChannelsBody(Body):
    pattern: str = Field("", max_length=1024)


class InfoBody(Body):
    pass


class BatchBody(Body):
    commands: list[dict[str, Any] | None] = Field(
        default_factory=list, max_length=MAX_BATCH_COMMANDS
    )
    parallel: bool = False
