"""Protocol codes (syncline.core.codes) against centrifuge-protocol.md §4 and the SDKs."""

from __future__ import annotations

import json

import pytest
from centrifuge.codes import _ErrorCode

from syncline.core.codes import (
    APP_DISCONNECT_CODES,
    APP_ERROR_CODES,
    APP_UNSUBSCRIBE_CODES,
    MAX_CLOSE_REASON_BYTES,
    DisconnectCode,
    ErrorCode,
    UnsubscribeCode,
    check_close_reason,
    disconnect_reconnects,
    unsubscribe_resubscribes,
)

# --- §4.1 error replies -------------------------------------------------------------------

# (code, message, temporary) exactly as the doc's table lists them.
ERROR_TABLE = [
    (100, "internal server error", True),
    (101, "unauthorized", False),
    (102, "unknown channel", False),
    (103, "permission denied", False),
    (104, "method not found", False),
    (105, "already subscribed", False),
    (106, "limit exceeded", False),
    (107, "bad request", False),
    (108, "not available", False),
    (109, "token expired", False),
    (110, "expired", False),
    (111, "too many requests", True),
    (112, "unrecoverable position", False),
    (113, "concurrent pagination", True),
]


@pytest.mark.parametrize(("code", "message", "temporary"), ERROR_TABLE)
def test_error_codes_match_the_go_server(code: int, message: str, temporary: bool) -> None:
    error = ErrorCode(code)
    assert (error.message, error.temporary) == (message, temporary)


def test_every_error_code_is_in_the_table() -> None:
    assert {code for code, _, _ in ERROR_TABLE} == set(ErrorCode)


def test_only_internal_and_rate_limit_errors_are_retried_by_sdks() -> None:
    sent_by_syncline = set(ErrorCode) - {ErrorCode.CONCURRENT_PAGINATION}
    assert {code for code in sent_by_syncline if code.temporary} == {
        ErrorCode.INTERNAL,
        ErrorCode.TOO_MANY_REQUESTS,
    }


def test_token_expired_is_the_code_the_sdk_special_cases() -> None:
    assert _ErrorCode.TOKEN_EXPIRED.value == ErrorCode.TOKEN_EXPIRED.value


def test_built_in_error_codes_stay_clear_of_app_range() -> None:
    assert not set(ErrorCode) & set(APP_ERROR_CODES)


# --- §4.3 unsubscribe push codes ------------------------------------------------------------

UNSUBSCRIBE_TABLE = [
    (2000, "server unsubscribe", False),
    (2500, "insufficient state", True),
    (2501, "subscription expired", True),
    (2502, "state invalidated", True),
]


@pytest.mark.parametrize(("code", "reason", "resubscribe"), UNSUBSCRIBE_TABLE)
def test_unsubscribe_codes_match_the_go_server(code: int, reason: str, resubscribe: bool) -> None:
    unsubscribe = UnsubscribeCode(code)
    assert (unsubscribe.reason, unsubscribe.resubscribe, unsubscribe.sendable) == (
        reason,
        resubscribe,
        True,
    )


def test_internal_unsubscribe_codes_are_never_sent() -> None:
    assert not UnsubscribeCode.CLIENT.sendable
    assert not UnsubscribeCode.DISCONNECT.sendable
    assert all(code.reason for code in UnsubscribeCode)


@pytest.mark.parametrize(
    ("code", "resubscribe"),
    [(2000, False), (2100, False), (2499, False), (2500, True), (2600, True), (2999, True)],
)
def test_sdks_resubscribe_from_2500(code: int, resubscribe: bool) -> None:
    assert unsubscribe_resubscribes(code) is resubscribe


def test_app_unsubscribe_ranges_are_one_terminal_one_resubscribing() -> None:
    terminal, resubscribing = APP_UNSUBSCRIBE_CODES
    assert not any(unsubscribe_resubscribes(code) for code in terminal)
    assert all(unsubscribe_resubscribes(code) for code in resubscribing)
    assert not set(UnsubscribeCode) & (set(terminal) | set(resubscribing))


# --- §4.4 disconnect (close) codes ----------------------------------------------------------

DISCONNECT_TABLE = [
    (3000, "connection closed", True),
    (3001, "shutdown", True),
    (3004, "internal server error", True),
    (3005, "connection expired", True),
    (3006, "subscription expired", True),
    (3008, "slow", True),
    (3009, "write error", True),
    (3010, "insufficient state", True),
    (3011, "force reconnect", True),
    (3012, "no pong", True),
    (3013, "too many requests", True),
    (3014, "state invalidated", True),
    (3500, "invalid token", False),
    (3501, "bad request", False),
    (3502, "stale", False),
    (3503, "force disconnect", False),
    (3504, "connection limit", False),
    (3505, "channel limit", False),
    (3506, "inappropriate protocol", False),
    (3507, "permission denied", False),
    (3508, "not available", False),
    (3509, "too many errors", False),
]


@pytest.mark.parametrize(("code", "reason", "reconnect"), DISCONNECT_TABLE)
def test_disconnect_codes_match_the_go_server(code: int, reason: str, reconnect: bool) -> None:
    disconnect = DisconnectCode(code)
    assert (disconnect.reason, disconnect.reconnect) == (reason, reconnect)


def test_every_disconnect_code_is_in_the_table() -> None:
    assert {code for code, _, _ in DISCONNECT_TABLE} == set(DisconnectCode)


def test_stale_is_3502_and_force_disconnect_is_3503() -> None:
    assert DisconnectCode(3502) is DisconnectCode.STALE
    assert DisconnectCode(3503) is DisconnectCode.FORCE_DISCONNECT


def test_v2_leaves_3002_3003_3007_undefined() -> None:
    assert not {3002, 3003, 3007} & set(DisconnectCode)


@pytest.mark.parametrize("code", list(DisconnectCode))
def test_close_reasons_are_not_json(code: DisconnectCode) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(code.reason)
    assert check_close_reason(code.reason) == code.reason


@pytest.mark.parametrize("code", list(DisconnectCode))
def test_close_reasons_fit_a_close_frame(code: DisconnectCode) -> None:
    assert 0 < len(code.reason.encode()) <= MAX_CLOSE_REASON_BYTES


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (1000, True),
        (1006, True),
        (1009, True),
        (3000, True),
        (3499, True),
        (3500, False),
        (3999, False),
        (4000, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (5000, True),
    ],
)
def test_sdk_reconnect_ranges(code: int, reconnect: bool) -> None:
    assert disconnect_reconnects(code) is reconnect


def test_app_disconnect_codes_are_outside_the_built_in_ones() -> None:
    assert not set(DisconnectCode) & set(APP_DISCONNECT_CODES)


@pytest.mark.parametrize(
    "reason",
    ["1", "true", "null", '"quoted"', '{"reason":"x","reconnect":false}', " [1] ", "-0.5e3"],
)
def test_json_parseable_close_reason_is_refused(reason: str) -> None:
    with pytest.raises(ValueError, match="JSON"):
        check_close_reason(reason)


def test_close_reason_must_fit_123_bytes_of_utf8() -> None:
    assert check_close_reason("é" * 61 + "x") == "é" * 61 + "x"
    with pytest.raises(ValueError, match="123 bytes"):
        check_close_reason("é" * 62)


def test_close_reason_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        check_close_reason("")
