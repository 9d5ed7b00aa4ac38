"""PNG charts of the results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from hdrh.histogram import HdrHistogram
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

from syncline.bench.histogram import percentile_curve

SIZE = (7.0, 4.0)
DPI = 100
_PERCENTILE_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


_TOP = 99.999  # the 100th percentile (the max) is drawn here: 1/(1-p) is infinite at 100


def _nines(percentile: float) -> float:
    """x position of a percentile on an HDR plot: 1/(1-p), so 90, 99, 99.9 are evenly spaced."""
    return 1.0 / (1.0 - min(percentile, _TOP) / 100.0)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_chart(
    path: Path,
    series: Sequence[tuple[str, HdrHistogram]],
    title: str,
    bound_ms: float | None = None,
) -> Path:
    """The HDR percentile distribution of one or more latency histograms."""
    fig, ax = plt.subplots(figsize=SIZE)
    for label, hist in series:
        points = percentile_curve(hist)
        if points:
            ax.plot([_nines(p) for p, _ in points], [v for _, v in points], label=label)
    if bound_ms is not None:
        ax.axhline(bound_ms, color="red", linestyle="--", linewidth=1, label=f"{bound_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlim(1.0, _nines(_TOP))
    # Log latency too: a light step's milliseconds and a saturated step's seconds both show.
    ax.set_yscale("log")
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.xaxis.set_major_locator(FixedLocator([_nines(p) for p in _PERCENTILE_TICKS]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / x:g}%"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_xlabel("percentile")
    ax.set_ylabel("commit → client latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def ramp_chart(
    path: Path,
    rates: Sequence[float],
    latency_ms: Sequence[dict[str, float | int]],
    deliveries_per_s: Sequence[float],
    title: str,
    bound_ms: float | None = None,
) -> Path:
    """Latency percentiles and deliveries/s against the commit rate."""
    fig, ax = plt.subplots(figsize=SIZE)
    for key in ("p50", "p95", "p99"):
        ax.plot(rates, [float(lat.get(key, 0.0)) for lat in latency_ms], marker="o", label=key)
    if bound_ms is not None:
        ax.axhline(bound_ms, color="red", linestyle="--", linewidth=1, label=f"{bound_ms:g} ms")
    ax.set_xlabel("rows committed per second")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    other = ax.twinx()
    other.plot(rates, deliveries_per_s, color="gray", marker="s", linestyle=":", label="deliv/s")
    other.set_ylabel("deliveries per second")
    lines = ax.get_legend_handles_labels()
    more = other.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="upper left")
    ax.set_title(title)
    return _save(fig, path)


def line_chart(
    path: Path, xs: Sequence[float], ys: Sequence[float], *, x_label: str, y_label: str, title: str
) -> Path:
    """One measured quantity against another (e.g. RSS against open connections)."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def bar_chart(
    path: Path, labels: Sequence[str], values: Sequence[float], *, y_label: str, title: str
) -> Path:
    """One value per label (e.g. changes/s per capture mode)."""
    fig, ax = plt.subplots(figsize=SIZE)
    bars = ax.bar(list(labels), list(values), color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.2f}" for v in values])
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
