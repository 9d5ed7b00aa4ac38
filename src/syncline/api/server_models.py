"""Request bodies of the server API, in Centrifugo's shapes, with Syncline's limits."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from syncline.core.codes import DisconnectCode

# Same bounds as syncline.publish() (migration 0002): checked here first for a clearer error.
MAX_CHANNEL_LENGTH = 255
MAX_BROADCAST_CHANNELS = 1000
MAX_USER_LENGTH = 255
MAX_HISTORY_LIMIT = 1000

Channel = Annotated[str, Field(min_length=1, max_length=MAX_CHANNEL_LENGTH, pattern=r"^\S+$")]
User = Annotated[str, Field(min_length=1, max_length=MAX_USER_LENGTH)]


class _Body(BaseModel):
    # Unknown fields are refused, not ignored: a typo ("chanel") must not publish nowhere.
    model_config = ConfigDict(extra="forbid")


class PublishRequest(_Body):
    channel: Channel
    data: Any = Field(description="any JSON value; at most 64 KiB encoded")


class BroadcastRequest(_Body):
    channels: list[Channel] = Field(min_length=1, max_length=MAX_BROADCAST_CHANNELS)
    data: Any


class ChannelRequest(_Body):
    channel: Channel


class StreamPositionBody(_Body):
    offset: int = Field(ge=0)
    epoch: str = Field(max_length=64)


class HistoryRequest(_Body):
    channel: Channel
    limit: int = Field(0, ge=-1, le=MAX_HISTORY_LIMIT, description="0: only the position")
    since: StreamPositionBody | None = None
    reverse: bool = False


class ChannelsRequest(_Body):
    pattern: str = Field("", max_length=MAX_CHANNEL_LENGTH, description="glob, e.g. room:*")


class UnsubscribeRequest(_Body):
    channel: Channel
    user: User
    client: str = Field("", max_length=64)


class DisconnectBody(_Body):
    code: int
    reason: str = Field("", max_length=100)

    @field_validator("code")
    @classmethod
    def _known_code(cls, value: int) -> int:
        if value not in DisconnectCode.__members__.values() or value < 3001:
            raise ValueError("code must be one of the protocol's disconnect codes (3001-3509)")
        return value


class DisconnectRequest(_Body):
    user: User
    client: str = Field("", max_length=64)
    disconnect: DisconnectBody | None = None
