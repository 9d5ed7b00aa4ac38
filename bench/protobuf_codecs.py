"""Protobuf libraries on the gateway's hot paths: the pub push of a fan-out, and command decoding.

    .venv/bin/python bench/protobuf_codecs.py [--json out.json]

Measures, in one process, medians of 7 runs:
  * encoding one ``pub`` push (a captured orders row, 245 bytes of JSON) with protobuf (upb,
    what Syncline uses: syncline.core.pb_wire), a hand-rolled encoder, pure-protobuf and
    betterproto2, and the JSON codec for reference; every encoder's bytes are checked equal;
  * the fan-out of one publication to 1,000 subscribers as the hub does it (encode once, queue
    the same bytes to each), to 1,000 subscribers half JSON and half Protobuf (PubFrames), and
    encoding per subscriber (what the cache saves);
  * decoding a subscribe command and the JS SDK's first frame (connect + 3 subscribes):
    Syncline's parser (upb + the JSON parser's checks), upb alone, pure-protobuf, betterproto2,
    and the JSON parser.
pure-protobuf and betterproto2 are not Syncline dependencies: install them anywhere on
PYTHONPATH to include them (``pip install --target /tmp/pbalt pure-protobuf==3.1.5
betterproto2==0.10.0``; ``PYTHONPATH=/tmp/pbalt``); they are skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from syncline.core import pb_protocol, pb_wire, protocol, wire
from syncline.core.codecs import JSON, PROTOBUF, PubFrames
from syncline.core.log import Publication
from syncline.core.proto import client_pb2 as pb

sys.path.insert(0, os.path.dirname(__file__))
from _protobuf_alternatives import betterproto2_codec, pure_protobuf_codec

SUBSCRIBERS = 1000
REPEATS = 7
CHANNEL = "orders"
OFFSET = 123_456
ROW = orjson.dumps(
    {
        "table": "orders",
        "op": "update",
        "row": {"id": 4711, "customer_name": "ann", "total": "12.50", "status": "paid",
                "updated_at": "2026-12-07T14:04:04.123456+00:00"},
        "old": None,
        "lsn": "27653120:0",
        "xid": 771,
        "commit_time": "2026-12-07T14:04:04.123456+00:00",
    }
)  # fmt: skip


def median_us(fn: Callable[[], object], budget_s: float = 0.2) -> float:
    """Median over REPEATS runs of the time of one call, in microseconds."""
    number, _ = timeit.Timer(fn).autorange()
    number = max(1, int(number * budget_s / 0.2))
    runs = timeit.repeat(fn, number=number, repeat=REPEATS)
    return statistics.median(runs) / number * 1e6


# --- hand-rolled: the pub push as bytes, field by field ----------------------------------------

_VARINTS = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _VARINTS[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def hand_pub_push(channel: str, data: bytes, offset: int) -> bytes:
    pub = b"\x22" + _varint(len(data)) + data + (b"\x30" + _varint(offset) if offset else b"")
    name = channel.encode()
    push = b"\x12" + _varint(len(name)) + name + b"\x22" + _varint(len(pub)) + pub
    reply = b"\x22" + _varint(len(push)) + push
    return _varint(len(reply)) + reply


# --- the measurements ----------------------------------------------------------------------


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    encode_us: dict[str, float] = field(default_factory=dict)
    fanout_us: dict[str, float] = field(default_factory=dict)
    decode_us: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    from google.protobuf import __version__ as pb_version
    from google.protobuf.internal import api_implementation

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "protobuf": f"{pb_version} ({api_implementation.Type()})",
    }


def run() -> Results:
    res = Results(machine=machine())
    pub = Publication(OFFSET, ROW, None, 0)
    reference = pb_wire.encode_pub_push(CHANNEL, ROW, OFFSET)

    encoders: dict[str, Callable[[], bytes]] = {
        "protobuf (upb), pb_wire": lambda: pb_wire.encode_pub_push(CHANNEL, ROW, OFFSET),
        "hand-rolled": lambda: hand_pub_push(CHANNEL, ROW, OFFSET),
    }
    decoders: dict[str, Callable[[bytes], object]] = {}
    for name, codec in (
        ("pure-protobuf", pure_protobuf_codec(CHANNEL, ROW, OFFSET)),
        ("betterproto2", betterproto2_codec(CHANNEL, ROW, OFFSET)),
    ):
        if codec is None:
            print(f"{name}: not installed, skipped", file=sys.stderr)
            continue
        encoders[name], decoders[name] = codec
    for name, encode in encoders.items():
        assert encode() == reference, name
        res.encode_us[name] = median_us(encode)
    res.encode_us["JSON, wire (reference)"] = median_us(
        lambda: wire.encode_pub_push(CHANNEL, ROW, OFFSET)
    )
    res.sizes = {
        "pub push, Protobuf": len(reference),
        "pub push, JSON": len(wire.encode_pub_push(CHANNEL, ROW, OFFSET)),
    }

    # Fan-out as the hub does it: one frame, queued to each subscriber's send buffer.
    queues: list[list[bytes]] = [[] for _ in range(SUBSCRIBERS)]
    codecs = [PROTOBUF] * SUBSCRIBERS
    mixed = [JSON, PROTOBUF] * (SUBSCRIBERS // 2)

    def fan_out_once() -> None:
        frame = pb_wire.encode_pub_push(CHANNEL, ROW, OFFSET)
        for q in queues:
            q.append(frame)
        for q in queues:
            q.clear()

    def fan_out_mixed() -> None:
        frames = PubFrames(CHANNEL, pub)
        for q, codec in zip(queues, mixed, strict=True):
            q.append(frames.get(codec))
        for q in queues:
            q.clear()

    def fan_out_per_subscriber() -> None:
        for q, codec in zip(queues, codecs, strict=True):
            q.append(codec.encode_pub_push(CHANNEL, ROW, OFFSET))
        for q in queues:
            q.clear()

    res.fanout_us["encode once, queue to 1,000 (Protobuf)"] = median_us(fan_out_once)
    res.fanout_us["PubFrames, 500 JSON + 500 Protobuf"] = median_us(fan_out_mixed)
    res.fanout_us["encode per subscriber, 1,000 (no cache)"] = median_us(fan_out_per_subscriber)

    subscribe = pb.Command(
        id=13,
        subscribe=pb.SubscribeRequest(
            channel="room:7", token="st", recover=True, epoch="k3Xa", offset=41,
            positioned=True, recoverable=True, join_leave=True, flag=1,
        ),
    ).SerializeToString()  # fmt: skip
    framed = pb_wire.varint(len(subscribe)) + subscribe
    json_subscribe = orjson.dumps(
        {"id": 13, "subscribe": {"channel": "room:7", "token": "st", "recover": True,
         "epoch": "k3Xa", "offset": 41, "positioned": True, "recoverable": True,
         "join_leave": True, "flag": 1}}
    )  # fmt: skip
    res.decode_us["subscribe: Syncline pb_protocol (upb + checks)"] = median_us(
        lambda: pb_protocol.parse_frame(framed, max_commands=128)
    )
    res.decode_us["subscribe: upb FromString alone"] = median_us(
        lambda: pb.Command.FromString(subscribe)
    )
    for name, decode in decoders.items():
        decoded: Any = decode(subscribe)
        assert decoded.subscribe.channel == "room:7" and decoded.subscribe.offset == 41, name
        res.decode_us[f"subscribe: {name} alone"] = median_us(lambda d=decode: d(subscribe))
    res.decode_us["subscribe: JSON protocol.parse_frame"] = median_us(
        lambda: protocol.parse_frame(json_subscribe, max_commands=128)
    )

    first = pb_wire.join(
        [
            _delimited(pb.Command(id=1, connect=pb.ConnectRequest(token="t" * 180, name="js"))),
            *(
                _delimited(pb.Command(id=i, subscribe=pb.SubscribeRequest(channel=f"room:{i}")))
                for i in range(2, 5)
            ),
        ]
    )
    res.decode_us["JS first frame (connect + 3 subscribes): pb_protocol"] = median_us(
        lambda: pb_protocol.parse_frame(first, max_commands=128)
    )
    return res


def _delimited(message: pb.Command) -> bytes:
    body = message.SerializeToString()
    return pb_wire.varint(len(body)) + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    res = run()
    print(json.dumps(res.machine))
    for title, table in (
        ("encode one pub push (us)", res.encode_us),
        (f"fan-out of one publication to {SUBSCRIBERS:,} subscribers (us)", res.fanout_us),
        ("decode (us)", res.decode_us),
        ("bytes", res.sizes),
    ):
        print(f"\n{title}")
        for name, value in table.items():
            print(
                f"  {name:<58} {value:>10.2f}"
                if isinstance(value, float)
                else f"  {name:<58} {value:>10}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res.__dict__, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
