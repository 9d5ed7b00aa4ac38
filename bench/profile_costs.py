"""Microseconds per request by layer, from a py-spy raw (collapsed) profile of the server.

usage: python bench/profile_costs.py PROFILE.raw SAMPLE_RATE_HZ REQUESTS
(py-spy record --format raw --rate HZ; REQUESTS: the requests k6 completed while it recorded).
Each sample of a busy thread stands for 1/HZ s of CPU; a sample goes to the innermost frame
that names a layer below, the event loop only when nothing else does.
"""

from __future__ import annotations

import sys
from collections import Counter

# Innermost match wins; order only breaks ties within one frame.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database driver (psycopg, pool)", ("psycopg",)),
    ("session check (JWT, SessionGuard)", ("jwt/", "session_guard", "auth_deps", "tokens.py")),
    ("validation and serialization (pydantic, orjson, json)", ("pydantic", "orjson", "json/")),
    (
        "capture and fan-out (capture, engine, gateway)",
        ("capture/", "engine/", "gateway/", "core/"),
    ),
    ("chat service and SQL building (syncline.apps)", ("syncline/apps/",)),
    ("fast path (syncline.api.fast)", ("api/fast.py",)),
    ("FastAPI/Starlette: middleware, routing, dependencies", ("fastapi/", "starlette/", "api/")),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/", "httptools")),
    ("logging and metrics", ("structlog", "logging/", "prometheus")),
)
LOOP = ("asyncio/", "uvloop", "selectors.py")


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    if any(n in f for f in frames for n in LOOP):
        return "event loop (asyncio, uvloop) and other"
    return "other"


def main() -> None:
    path, rate, requests = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8") as raw:
        for line in raw:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if stack and n.isdigit():
                counts[layer_of(stack.split(";"))] += int(n)
    total = sum(counts.values())
    us_per_sample = 1e6 / rate
    print("| layer | share | µs/request |\n|---|---|---|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / total:.0f} % | {n * us_per_sample / requests:.0f} |")
    print(f"| **total (CPU of the process)** | 100 % | {total * us_per_sample / requests:.0f} |")


if __name__ == "__main__":
    main()
