"""Bench tables never cut a word: a table when whole words fit, else one block per step."""

from __future__ import annotations

from rich.console import Console

from syncline.bench.report import FANOUT_HEADERS, fanout_table

STEP = {
    "rate": 40,
    "offered_rate": 40.0,
    "subscribers": 1000,
    "deliveries_per_s": 40000,
    "latency_ms": {"p50": 1.2, "p95": 3.4, "p99": 12.0, "max": 40.0},
    "accounting": {"lost": 0, "duplicated": 0},
    "client_cpu_s": 3.2,
    "server_cpu_s": 5.1,
    "commit_ms": {"p99": 1.0},
}


def rendered(width: int) -> str:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(fanout_table("fan-out", [STEP], width))
    return console.export_text()


def test_at_80_columns_every_header_and_value_is_whole() -> None:
    text = rendered(80)
    assert "…" not in text
    for header in FANOUT_HEADERS[1:]:
        assert header in text
    assert "1,000" in text and "40,000" in text


def test_a_wide_terminal_gets_one_table() -> None:
    text = rendered(200)
    assert "…" not in text
    assert "subscribers" in text and "┃" in text
