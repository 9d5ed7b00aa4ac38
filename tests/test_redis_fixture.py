"""The test suite's own redis-server: started on a free port, answering, stopped afterwards."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def test_redis_server_started_by_the_tests_answers(redis_url: str) -> None:
    address = urlparse(redis_url)
    assert address.port is not None
    assert address.port != 6379  # never the machine's own Redis
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        reply = b""
        while reply.count(b"\r\n") < 2:
            reply += conn.recv(64)
    assert reply == b"+PONG\r\n+OK\r\n"
