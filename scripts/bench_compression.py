"""permessage-deflate on the fan-out path, measured: bytes and CPU per delivery of publication
frames with compression off, with the gateway's shared compressor, and with a compressor per
connection (context takeover, the alternative it avoids); and the memory each costs.

Run: .venv/bin/python scripts/bench_compression.py [--subscribers N] [--publications P]
Prints medians of 5 runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import zlib
from collections.abc import Callable
from functools import partial

import orjson

from syncline.core.codecs import JSON, PubFrames
from syncline.core.log import Publication
from syncline.gateway.deflate import (
    TAKEOVER_BITS,
    TAKEOVER_MEM_LEVEL,
    Deflater,
    Inflater,
    Takeover,
    negotiate,
)

Send = Callable[[int, list[bytes]], int]  # (connection, parts) -> bytes on the wire


def frames(count: int) -> list[bytes]:
    """Publication frames as the hub hands them out: captured order rows, in JSON."""
    out = []
    for n in range(count):
        row = {
            "id": n + 1,
            "customer_name": f"customer {n % 97}",
            "product_name": ["tea", "coffee", "a box of biscuits", "oat milk"][n % 4],
            "quantity": n % 5 + 1,
            "created_at": f"2026-12-07T15:{n % 60:02d}:{n % 60:02d}.{n:06d}+00:00",
        }
        data = orjson.dumps({"op": "insert", "row": row})
        pub = Publication(offset=n + 1, data=data, info=None, time_ms=1_796_000_000_000 + n)
        out.append(PubFrames("orders", pub).get(JSON))
    return out


def off(_conn: int, parts: list[bytes]) -> int:
    return len(b"\n".join(parts))


def shared(deflater: Deflater) -> Send:
    def send(_conn: int, parts: list[bytes]) -> int:
        out = deflater.message(15, parts, b"\n")
        return len(out) if out is not None else len(b"\n".join(parts))

    return send


def per_connection(count: int, bits: int, mem_level: int) -> Send:
    compressors = [zlib.compressobj(6, zlib.DEFLATED, -bits, mem_level) for _ in range(count)]

    def send(conn: int, parts: list[bytes]) -> int:
        c = compressors[conn]
        return len(c.compress(b"\n".join(parts)) + c.flush(zlib.Z_SYNC_FLUSH)) - 4

    return send


def run(send: Send, pubs: list[bytes], subscribers: int, batch: int) -> tuple[float, int]:
    """µs of CPU per delivery, and bytes on the wire in all."""
    wire = 0
    start = time.process_time()
    for i in range(0, len(pubs), batch):
        parts = pubs[i : i + batch]
        for conn in range(subscribers):
            wire += send(conn, parts)
    cpu = time.process_time() - start
    return cpu / (len(pubs) * subscribers) * 1e6, wire


def memory(make: Callable[[], object]) -> float:
    """KiB one object keeps allocated (zlib allocates through Python's tracked allocator)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = make()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / 1024


def inflater_after_one(offer: str) -> object:
    headers: dict[str, list[str]] = {"Sec-WebSocket-Extensions": [offer]}

    class Headers:
        def getall(self, name: str, default: list[str]) -> list[str]:
            return headers.get(name, default)

    agreement = negotiate(Headers())  # type: ignore[arg-type]
    assert agreement is not None
    inflater = Inflater(agreement[0])
    c = zlib.compressobj(6, zlib.DEFLATED, -agreement[0].client_bits)
    inflater.inflate(
        (c.compress(b'{"id":1,"connect":{}}') + c.flush(zlib.Z_SYNC_FLUSH))[:-4], 65536
    )
    return inflater


def compressor_after_one(bits: int, mem_level: int) -> object:
    c = zlib.compressobj(6, zlib.DEFLATED, -bits, mem_level)
    c.compress(frames(1)[0])
    c.flush(zlib.Z_SYNC_FLUSH)
    return c


def takeover(count: int) -> Send:
    compressors = [Takeover(TAKEOVER_BITS) for _ in range(count)]

    def send(conn: int, parts: list[bytes]) -> int:
        out = compressors[conn].message(parts, b"\n")
        return len(out) if out is not None else len(b"\n".join(parts))

    return send


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publications", type=int, default=200)
    args = parser.parse_args()
    pubs = frames(args.publications)
    print(f"publication frame: median {statistics.median(map(len, pubs))} bytes of JSON")
    modes: dict[str, Callable[[], Send]] = {
        "off": lambda: off,
        "shared (default)": lambda: shared(Deflater()),
        "takeover 10/2 (context)": lambda: takeover(args.subscribers),
        "per connection 12/5": lambda: per_connection(args.subscribers, 12, 5),
        "per connection 15/8": lambda: per_connection(args.subscribers, 15, 8),
    }
    for batch in (1, 10):
        print(f"\n{args.subscribers} subscribers, {batch} publication(s) per frame")
        base = 0
        for name, make in modes.items():
            results = [run(make(), pubs, args.subscribers, batch) for _ in range(5)]
            cpu = statistics.median(r[0] for r in results)
            wire = results[0][1]
            base = base or wire
            print(f"  {name:24} {cpu:6.2f} us/delivery  {wire / base:5.2f} of the bytes")
    print("\nmemory kept per connection (KiB)")
    offers = {
        "inflater, client_no_context_takeover": "permessage-deflate; client_no_context_takeover",
        "inflater, 12-bit client window": "permessage-deflate; client_max_window_bits",
        "inflater, 15-bit client window": "permessage-deflate",
    }
    for name, offer in offers.items():
        print(f"  {name:38} {memory(partial(inflater_after_one, offer)):6.1f}")
    for bits, level in ((TAKEOVER_BITS, TAKEOVER_MEM_LEVEL), (12, 5), (15, 8)):
        name = f"compressor {bits}/{level}"
        print(f"  {name:38} {memory(partial(compressor_after_one, bits, level)):6.1f}")


if __name__ == "__main__":
    main()
