"""Prometheus metrics, defined once per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from syncline import __version__

BUILD = Info("syncline_build", "Syncline build information")
BUILD.info({"version": __version__})

HTTP_REQUESTS = Counter(
    "syncline_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
CHANGES_CAPTURED = Counter(
    "syncline_changes_captured_total", "Changes read from the capture source", ["table", "op"]
)
PUBLICATIONS = Counter(
    "syncline_publications_total", "Publications appended to channel logs", ["table"]
)
CAPTURE_LAG_BYTES = Gauge("syncline_capture_lag_bytes", "WAL bytes between server and capture")
CAPTURE_LAG_SECONDS = Gauge("syncline_capture_lag_seconds", "Seconds from commit to append")
SLOT_RETAINED_WAL = Gauge("syncline_slot_retained_wal_bytes", "WAL retained by the slot")
CAPTURE_UP = Gauge("syncline_capture_up", "1 while the capture source is streaming")
CAPTURE_LEADER = Gauge(
    "syncline_capture_leader", "1 while this node holds the capture lock (0: standing by)"
)
NODE_INFO = Gauge("syncline_node_info", "This node's name (always 1)", ["node"])
COMMIT_TO_APPEND = Histogram(
    "syncline_commit_to_append_seconds",
    "Commit to channel-log append latency",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONNECTIONS = Gauge("syncline_gateway_connections", "Open WebSocket connections")
DELIVERIES = Counter("syncline_gateway_deliveries_total", "Publications sent to clients")
SLOW_DISCONNECTS = Counter("syncline_gateway_slow_disconnects_total", "Slow consumers closed")
