"""pure-protobuf and betterproto2 versions of the messages bench/protobuf_codecs.py measures.

No ``from __future__ import annotations`` here: both libraries read the annotations of classes
defined inside a function, which must then be objects, not strings.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from syncline.core.pb_wire import varint


def pure_protobuf_codec(
    channel: str, row: bytes, offset: int
) -> tuple[Callable[[], bytes], Callable[[bytes], object]] | None:
    try:
        from pure_protobuf.annotations import Field, uint
        from pure_protobuf.message import BaseMessage
    except ImportError:
        return None

    @dataclass
    class PPublication(BaseMessage):
        data: Annotated[bytes, Field(4)] = b""
        offset: Annotated[uint, Field(6)] = uint(0)  # noqa: RUF009

    @dataclass
    class PPush(BaseMessage):
        channel: Annotated[str, Field(2)] = ""
        pub: Annotated[PPublication | None, Field(4)] = None

    @dataclass
    class PReply(BaseMessage):
        push: Annotated[PPush | None, Field(4)] = None

    @dataclass
    class PSubscribeRequest(BaseMessage):
        channel: Annotated[str, Field(1)] = ""
        token: Annotated[str, Field(2)] = ""
        recover: Annotated[bool, Field(3)] = False
        epoch: Annotated[str, Field(6)] = ""
        offset: Annotated[uint, Field(7)] = uint(0)  # noqa: RUF009
        data: Annotated[bytes, Field(8)] = b""
        positioned: Annotated[bool, Field(9)] = False
        recoverable: Annotated[bool, Field(10)] = False
        join_leave: Annotated[bool, Field(11)] = False
        flag: Annotated[int, Field(14)] = 0

    @dataclass
    class PCommand(BaseMessage):
        id: Annotated[uint, Field(1)] = uint(0)  # noqa: RUF009
        subscribe: Annotated[PSubscribeRequest | None, Field(5)] = None

    def encode() -> bytes:
        body = bytes(PReply(PPush(channel, PPublication(row, uint(offset)))))
        return varint(len(body)) + body

    return encode, PCommand.loads


def betterproto2_codec(
    channel: str, row: bytes, offset: int
) -> tuple[Callable[[], bytes], Callable[[bytes], object]] | None:
    try:
        import betterproto2 as bp
    except ImportError:
        return None

    @dataclass(eq=False, repr=False)
    class BPublication(bp.Message):
        data: bytes = bp.field(4, bp.TYPE_BYTES)
        offset: int = bp.field(6, bp.TYPE_UINT64)

    @dataclass(eq=False, repr=False)
    class BPush(bp.Message):
        channel: str = bp.field(2, bp.TYPE_STRING)
        pub: BPublication | None = bp.field(4, bp.TYPE_MESSAGE, optional=True)  # noqa: RUF009

    @dataclass(eq=False, repr=False)
    class BReply(bp.Message):
        push: BPush | None = bp.field(4, bp.TYPE_MESSAGE, optional=True)  # noqa: RUF009

    @dataclass(eq=False, repr=False)
    class BSubscribeRequest(bp.Message):
        channel: str = bp.field(1, bp.TYPE_STRING)
        token: str = bp.field(2, bp.TYPE_STRING)
        recover: bool = bp.field(3, bp.TYPE_BOOL)
        epoch: str = bp.field(6, bp.TYPE_STRING)
        offset: int = bp.field(7, bp.TYPE_UINT64)
        data: bytes = bp.field(8, bp.TYPE_BYTES)
        positioned: bool = bp.field(9, bp.TYPE_BOOL)
        recoverable: bool = bp.field(10, bp.TYPE_BOOL)
        join_leave: bool = bp.field(11, bp.TYPE_BOOL)
        flag: int = bp.field(14, bp.TYPE_INT64)

    @dataclass(eq=False, repr=False)
    class BCommand(bp.Message):
        id: int = bp.field(1, bp.TYPE_UINT32)
        subscribe: BSubscribeRequest | None = bp.field(5, bp.TYPE_MESSAGE, optional=True)  # noqa: RUF009

    def encode() -> bytes:
        body = bytes(BReply(push=BPush(channel=channel, pub=BPublication(data=row, offset=offset))))
        return varint(len(body)) + body

    return encode, BCommand.parse
