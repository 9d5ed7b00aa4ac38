"""Latency histograms (HDR): one shape everywhere, merged across processes, summarized in ms."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

# 1 µs to 10 minutes at 3 significant digits: a stalled run still records its worst case.
LOWEST_US = 1
HIGHEST_US = 600_000_000
DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """An empty latency histogram, in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_us(hist: HdrHistogram, value_us: int) -> None:
    """Record one latency; a negative one (clock step) counts as the lowest value, not an error."""
    hist.record_value(min(max(value_us, LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> bytes:
    """The compressed form that crosses a process boundary."""
    data: bytes = hist.encode()
    return data


def merge(encoded: Iterable[bytes]) -> HdrHistogram:
    """One histogram from the encoded histograms of several processes."""
    result = new_histogram()
    for item in encoded:
        if item:
            result.add(HdrHistogram.decode(item))
    return result


def summary_ms(hist: HdrHistogram) -> dict[str, float | int]:
    """count, p50 … p99.9 and max, in milliseconds (3 decimals)."""
    out: dict[str, float | int] = {"count": int(hist.get_total_count())}
    if not out["count"]:
        return out | {_key(p): 0.0 for p in PERCENTILES} | {"max": 0.0, "mean": 0.0}
    for p in PERCENTILES:
        out[_key(p)] = round(hist.get_value_at_percentile(p) / 1000, 3)
    out["max"] = round(hist.get_max_value() / 1000, 3)
    out["mean"] = round(hist.get_mean_value() / 1000, 3)
    return out


def percentile_curve(hist: HdrHistogram, ticks_per_half: int = 5) -> list[tuple[float, float]]:
    """(percentile, latency ms) points of the HDR percentile distribution, for charts."""
    points: list[tuple[float, float]] = []
    if not hist.get_total_count():
        return points
    for item in hist.get_percentile_iterator(ticks_per_half):
        points.append((float(item.percentile), item.value_iterated_to / 1000))
        if item.percentile >= 100.0:
            break
    return points


def _key(p: float) -> str:
    return f"p{p:g}"
