"""`syncline bench chat`'s rate runs against a live Syncline: accounts signed in before each k6
run, and the server's CPU time per request measured over it. Timings are never asserted."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from syncline.bench.chat import ChatOptions, run_chat
from syncline.bench.chat_accounts import ChatAccounts
from syncline.bench.server import Target

from helpers.live_server import LiveServer


async def test_a_short_history_and_rpc_run_measures_cpu_per_request(
    live_server: LiveServer, tmp_path: Path
) -> None:
    # The server runs in this process's event loop: k6 runs from a thread, and this process's
    # CPU time stands for the server's.
    target = Target(live_server.http_url, live_server.ws_url, "", pid=os.getpid())
    options = ChatOptions("history,rpc", users=3, post_seconds=2, rates=(20,), rpc_sockets=2)
    result = await asyncio.to_thread(run_chat, target, options, tmp_path)
    assert result.k6_exit_code == 0
    for scenario in ("history", "rpc"):
        (step,) = result.steps[scenario]
        ours = step["syncline"]
        assert ours["requests"] > 0, (scenario, ours)
        # A chat.send still in flight when its socket closes counts as failed (one of ~40).
        assert ours["failed_share"] <= (0.1 if scenario == "rpc" else 0.0)
        assert ours["cpu_s"] > 0
        answered = ours["requests"] * (1 - ours["failed_share"])
        assert ours["ok_per_s"] == round(answered / 2, 1)
        assert ours["cpu_us_per_request"] == round(ours["cpu_s"] * 1e6 / answered)
        assert "peer" not in step
        assert result.sustainable[scenario]["cpu_ratio"] is None
    # The users were registered once, before the runs, and k6 read them from the file.
    assert '"token"' in (tmp_path / "users.json").read_text()


async def test_a_rate_held_twice_reports_the_median_of_the_tries(
    live_server: LiveServer, tmp_path: Path
) -> None:
    target = Target(live_server.http_url, live_server.ws_url, "", pid=os.getpid())
    options = ChatOptions("history", users=3, post_seconds=2, rates=(20,), repeat=2)
    result = await asyncio.to_thread(run_chat, target, options, tmp_path)
    assert result.k6_exit_code == 0
    (step,) = result.steps["history"]
    ours = step["syncline"]
    # Two k6 runs, each in its own file; the step is their median (of two: the mean).
    assert (tmp_path / "k6-history-20-1.json").exists()
    assert (tmp_path / "k6-history-20-2.json").exists()
    first, second = ours["p99_tries_ms"]
    assert ours["p99_ms"] == round((first + second) / 2, 3)
    assert ours["requests"] > 0 and ours["cpu_us_per_request"] > 0


async def test_accounts_register_once_and_sign_in_again_when_old(
    live_server: LiveServer, tmp_path: Path
) -> None:
    accounts = ChatAccounts(live_server.http_url, 2, tmp_path / "users.json")
    await asyncio.to_thread(accounts.file)
    first = list(accounts.tokens)
    assert len(first) == 2 and all(first)
    await asyncio.to_thread(accounts.file)
    assert accounts.tokens == first  # fresh enough: no new sign-in
    accounts.signed_in_at -= 3600
    await asyncio.to_thread(accounts.file)
    assert len(accounts.tokens) == 2 and accounts.tokens != first
