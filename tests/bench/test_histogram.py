"""Latency histograms: merged across processes and summarized in milliseconds."""

from __future__ import annotations

from syncline.bench import histogram


def test_merge_of_encoded_histograms_keeps_every_value() -> None:
    a, b = histogram.new_histogram(), histogram.new_histogram()
    for value in range(1, 1001):
        histogram.record_us(a, value * 1000)  # 1 … 1000 ms
    histogram.record_us(b, 5_000_000)  # 5 s
    merged = histogram.merge([histogram.encode(a), histogram.encode(b), b""])
    summary = histogram.summary_ms(merged)
    assert summary["count"] == 1001
    assert 495 <= summary["p50"] <= 505
    assert 4990 <= summary["max"] <= 5010


def test_out_of_range_values_are_clamped_not_errors() -> None:
    hist = histogram.new_histogram()
    histogram.record_us(hist, -20)  # a clock step between writer and client
    histogram.record_us(hist, 10**12)
    assert hist.get_total_count() == 2
    assert histogram.summary_ms(hist)["max"] >= histogram.HIGHEST_US / 1000 * 0.99


def test_empty_summary_and_curve() -> None:
    hist = histogram.new_histogram()
    assert histogram.summary_ms(hist)["count"] == 0
    assert histogram.percentile_curve(hist) == []
    histogram.record_us(hist, 1500)
    curve = histogram.percentile_curve(hist)
    assert curve[-1][0] == 100.0
    assert 1.49 <= curve[-1][1] <= 1.51
