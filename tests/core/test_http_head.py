"""Request heads on the gateway's port (syncline.core.http_head), with plain bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.http_head import HeadError, parse_head, request_path


def test_a_post_from_a_browser() -> None:
    head = parse_head(
        b"POST /emulation?x=1 HTTP/1.1\r\nHost: h:8001\r\nContent-Type: application/json\r\n"
        b"Content-Length: 12\r\nOrigin: http://h:8000\r\nAccept: a\r\nAccept: b"
    )
    assert (head.method, head.path, head.query, head.version) == (
        "POST",
        "/emulation",
        "x=1",
        "HTTP/1.1",
    )
    assert head.header("content-type") == "application/json"
    assert head.header("accept") == "a, b"
    assert head.content_length(100) == 12
    assert head.keep_alive


def test_query_parameters_are_percent_decoded() -> None:
    head = parse_head(b"GET /connection/sse?cf_connect=%7B%22id%22%3A1%7D&a=1 HTTP/1.1\r\nHost: h")
    assert head.param("cf_connect") == '{"id":1}'
    assert head.param("missing") is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"BREW /x HTTP/1.1\r\nHost: h", 405),
        (b"GET /x HTTP/2.0\r\nHost: h", 400),
        (b"GET http://h/x HTTP/1.1\r\nHost: h", 400),
        (b"GET /x HTTP/1.1", 400),  # no Host
        (b"GET /x\r\nHost: h", 400),
        (b"GET /x HTTP/1.1\r\nHost: h\r\n folded", 400),
        (b"GET /x HTTP/1.1\r\nHost: h\r\nBad Name: v", 400),
        (b"GET /x HTTP/1.1\r\nHost: h\r\nX: a\x00b", 400),
        (b"GET /\xff HTTP/1.1\r\nHost: h", 400),
        (b"GET /x HTTP/1.1\r\nHost: h" + b"\r\nX: y" * 101, 431),
    ],
)
def test_malformed_heads(raw: bytes, status: int) -> None:
    with pytest.raises(HeadError) as caught:
        parse_head(raw)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("length_header", "status"),
    [
        (b"Content-Length: 101", 413),
        (b"Content-Length: -1", 400),
        (b"Content-Length: 1, 2", 400),
        (b"Transfer-Encoding: chunked", 411),
    ],
)
def test_bodies_out_of_bounds(length_header: bytes, status: int) -> None:
    head = parse_head(b"POST /x HTTP/1.1\r\nHost: h\r\n" + length_header)
    with pytest.raises(HeadError) as caught:
        head.content_length(100)
    assert caught.value.status == status


def test_keep_alive_by_version() -> None:
    assert not parse_head(b"GET / HTTP/1.0").keep_alive
    assert not parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close").keep_alive


def test_request_path() -> None:
    assert request_path(b"GET /connection/sse?cf_connect=x HTTP/1.1\r\nHost: h\r\n\r\n") == (
        "/connection/sse"
    )
    assert request_path(b"GET /connection/websocket HTTP/1.1\r\n") == "/connection/websocket"
    assert request_path(b"garbage") is None
    assert request_path(b"GET x HTTP/1.1\r\n") is None


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_a_head_error(raw: bytes) -> None:
    status = 0
    try:
        parse_head(raw)
    except HeadError as err:
        status = err.status
    assert status == 0 or 400 <= status < 500
    request_path(raw)
