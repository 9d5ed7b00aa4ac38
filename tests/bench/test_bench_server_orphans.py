"""A bench killed outright takes its `syncline up` (and that server's PostgreSQL) with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import sys, time
from syncline.bench.server import started_server
with started_server() as target:
    print("SERVER_PID", target.pid, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _postmaster(data_dir_marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"/postgres")
            and data_dir_marker.encode() in b" ".join(cmdline)
        ):
            pids.append(int(entry.name))
    return pids


def test_kill_9_of_the_bench_stops_its_server_and_postgres() -> None:
    bench = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert bench.stdout is not None
        # Logs share stdout; the script's own line is marked.
        line = ""
        while not line.startswith("SERVER_PID "):
            line = bench.stdout.readline()
            assert line, "the bench script ended before its server was ready"
        server_pid = int(line.split()[1])
        work = os.readlink(f"/proc/{server_pid}/cwd")
        assert _postmaster(work), "the bench server's PostgreSQL should be running"
    finally:
        bench.send_signal(signal.SIGKILL)
        bench.wait()
        if bench.stdout is not None:
            bench.stdout.close()
    deadline = time.monotonic() + 60
    while (_alive(server_pid) or _postmaster(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(server_pid), "the server outlived its bench"
    assert not _postmaster(work), "the server's PostgreSQL outlived its bench"
