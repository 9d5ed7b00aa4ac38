"""Request bodies of the server API, in Centrifugo's shapes, with Syncline's limits."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from syncline.apps.inputs import MAX_BIGINT, Input
from syncline.core.codes import DisconnectCode

# Same bounds as syncline.publish() (migration 0002): checked here first for a clearer error.
MAX_CHANNEL_LENGTH = 255
MAX_BROADCAST_CHANNELS = 1000
MAX_USER_LENGTH = 255
MAX_HISTORY_LIMIT = 1000

Channel = Annotated[str, Field(min_length=1, max_length=MAX_CHANNEL_LENGTH, pattern=r"^\S+$")]
User = Annotated[str, Field(min_length=1, max_length=MAX_USER_LENGTH)]


class PublishRequest(Input):
    channel: Channel
    data: Any = Field(description="any JSON value; at most 64 KiB encoded")


class BroadcastRequest(Input):
    channels: list[Channel] = Field(min_length=1, max_length=MAX_BROADCAST_CHANNELS)
    data: Any


class ChannelRequest(Input):
    channel: Channel


class StreamPositionBody(Input):
    offset: int = Field(ge=0, le=MAX_BIGINT)
    epoch: str = Field(max_length=64)


class HistoryRequest(Input):
    channel: Channel
    limit: int = Field(0, ge=-1, le=MAX_HISTORY_LIMIT, description="0: only the position")
    since: StreamPositionBody | None = None
    reverse: bool = False


class ChannelsRequest(Input):
    pattern: str = Field("", max_length=MAX_CHANNEL_LENGTH, description="glob, e.g. room:*")


class UnsubscribeRequest(Input):
    channel: Channel
    user: User
    client: str = Field("", max_length=64)


class DisconnectBody(Input):
    code: int
    reason: str = Field("", max_length=100)

    @field_validator("code")
    @classmethod
    def _known_code(cls, value: int) -> int:
        if value not in DisconnectCode.__members__.values() or value < 3001:
            raise ValueError("code must be one of the protocol's disconnect codes (3001-3509)")
        return value


class DisconnectRequest(Input):
    user: User
    client: str = Field("", max_length=64)
    disconnect: DisconnectBody | None = None
