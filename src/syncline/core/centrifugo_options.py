"""Centrifugo's channel options read as Syncline namespace options, or refused with the reason.

A namespace written for Centrifugo (``allow_subscribe_for_client``, ``force_recovery``,
``history_ttl = "300s"``…) is translated into Syncline's own options before validation. An
option whose meaning is the same is accepted; one whose meaning would differ, or that Syncline
lacks, is an error naming it and why — never silently dropped. The table, with the reasons, is
docs/topics/centrifugo-config.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Go's time.Duration text, as Centrifugo's config writes durations: "300s", "1h30m", "500ms".
_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

# The Syncline options that Centrifugo options become (the subscribe policy and the allow_*).
SUBSCRIBE = "subscribe"
CLIENT_PUBLISH_HISTORY = "client_publish_history"
_ACTIONS = ("publish", "history", "presence")

# Centrifugo's names that are Syncline's with the same meaning; no translation needed.
SAME_NAMES = frozenset(
    {
        "history_size",
        "history_ttl",
        "presence",
        "join_leave",
        "allow_user_limited_channels",
        "allowed_delta_types",
    }
)

# Centrifugo options Syncline does not have, with what to do instead. Set to their zero value
# (false, 0, "", an empty list or table, "0s") they ask for nothing and are accepted.
UNSUPPORTED: dict[str, str] = {
    "force_recovery_mode": "only the stream recovery mode exists ('cache' does not)",
    "auto_cache_recover": "the cache recovery mode does not exist",
    "allow_tags_filter": "publications carry no tags",
    "delta_publish": "delta is chosen per subscription (allowed_delta_types), not per publish",
    "channel_regex": "channel names are checked by channel_pattern (e.g. 'chat:{room_id}')",
    "publication_data_format": "publications are JSON objects made by capture",
    "subscription_type": "every subscription is a stream",
    "map": "there are no map subscriptions",
    "shared_poll": "there are no shared-poll subscriptions",
    "map_clients_presence_channel_prefix": "there are no map subscriptions",
    "map_users_presence_channel_prefix": "there are no map subscriptions",
    "subscribe_proxy_enabled": "there are no proxies: use subscribe = 'membership' or tokens",
    "subscribe_proxy_name": "there are no proxies",
    "publish_proxy_enabled": "there are no proxies: write through your API into PostgreSQL",
    "publish_proxy_name": "there are no proxies",
    "sub_refresh_proxy_enabled": "there are no proxies: subscription tokens are refreshed",
    "sub_refresh_proxy_name": "there are no proxies",
    "subscribe_stream_proxy_enabled": "there are no stream proxies",
    "subscribe_stream_proxy_name": "there are no stream proxies",
    "subscribe_stream_proxy_bidirectional": "there are no stream proxies",
}

# Accepted, with a note that `syncline config` and the start-up log show.
_NOTED: dict[str, str] = {
    "history_meta_ttl": (
        "history_meta_ttl is ignored: the engine keeps a channel's epoch and offset for its own "
        "time (the process's life in memory, 24 h past the last publication in Redis)"
    ),
    "allow_positioning": "allow_positioning: Syncline always lets a client ask for positioning",
}

CENTRIFUGO_ONLY = frozenset(
    {
        "force_recovery",
        "allow_recovery",
        "force_positioning",
        "allow_positioning",
        "history_meta_ttl",
        "force_push_join_leave",
        "allow_subscribe_for_client",
        "allow_subscribe_for_anonymous",
        *(
            f"allow_{a}_for_{who}"
            for a in _ACTIONS
            for who in ("subscriber", "client", "anonymous")
        ),
        *UNSUPPORTED,
    }
)


def parse_duration_s(value: Any) -> Any:
    """Seconds from a Go duration ("300s", "1h30m") or a number; anything else is returned
    for the model to refuse. A fraction of a second is refused: TTLs are whole seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    if text == "0":
        return 0
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration like '300s', '5m' or '1h30m'")
    seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART_RE.findall(text))
    if abs(seconds - round(seconds)) > 1e-9:
        raise ValueError(f"{value!r} is not a whole number of seconds")
    return round(seconds)


def _is_zero(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() in ("", "0", "0s", "default")
    return not value


@dataclass
class Translation:
    """Syncline options made from a namespace's options, and what was noted on the way."""

    options: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def translate(
    raw: Mapping[str, Any], *, centrifugo: bool = False, known: Iterable[str] = ()
) -> Translation:
    """Read Centrifugo's option names in ``raw`` as Syncline's (Syncline's pass through).

    A namespace in Centrifugo's layout (``centrifugo``), or with any Centrifugo-only name, is
    read with Centrifugo's defaults for what it does not say: no ``allow_subscribe_for_client``
    means subscribing needs a token (or a user-limited channel), as in Centrifugo. Otherwise
    ``raw`` is returned as it is. ``known`` are the options Syncline has: one of them is
    never translated away, even if listed here as unsupported (a newer Syncline has it).
    """
    known = set(known)
    only = CENTRIFUGO_ONLY - known
    if not centrifugo and not only & raw.keys():
        return Translation(dict(raw))
    out = {k: v for k, v in raw.items() if k not in only}
    result = Translation(out)
    problems, notes = result.problems, result.notes

    def flag(name: str) -> bool:
        value = raw.get(name, False)
        if not isinstance(value, bool):
            problems.append(f"{name}: must be true or false")
            return False
        return value

    for name, why in UNSUPPORTED.items():
        if name in raw and name in only and not _is_zero(raw[name]):
            problems.append(f"{name}: Centrifugo's option is not supported by Syncline: {why}")
    for name, note in _NOTED.items():
        if name in raw and not _is_zero(raw[name]):
            notes.append(note)

    # Subscribe: Centrifugo's flags, or Syncline's policy, not both.
    for_client, for_anonymous = (
        flag("allow_subscribe_for_client"),
        flag("allow_subscribe_for_anonymous"),
    )
    said = {"allow_subscribe_for_client", "allow_subscribe_for_anonymous"} & raw.keys()
    if said and SUBSCRIBE in raw:
        problems.append(f"give subscribe or {' and '.join(sorted(said))}, not both")
    elif SUBSCRIBE not in raw:
        if for_anonymous and not for_client:
            problems.append(
                "allow_subscribe_for_anonymous needs allow_subscribe_for_client (as in Centrifugo)"
            )
        out[SUBSCRIBE] = ("public" if for_anonymous else "authenticated") if for_client else "token"
    policy = out.get(SUBSCRIBE, "authenticated")

    # Recovery and positioning.
    force_recovery, allow_recovery = flag("force_recovery"), flag("allow_recovery")
    if ("force_recovery" in raw or "allow_recovery" in raw) and "recover" in raw:
        problems.append("give recover or Centrifugo's force_recovery/allow_recovery, not both")
    elif force_recovery or allow_recovery:
        out["recover"] = True
        if allow_recovery and not force_recovery:
            notes.append(
                "allow_recovery: every subscription is recoverable (as with force_recovery)"
            )
    if flag("force_positioning") and not out.get("recover"):
        problems.append(
            "force_positioning: Syncline positions the subscriptions of recoverable namespaces "
            "only (and any that asks); add force_recovery"
        )

    # Join and leave: Syncline pushes them to every subscriber (force_push_join_leave).
    if flag("force_push_join_leave"):
        if not out.get("join_leave"):
            problems.append("force_push_join_leave needs join_leave = true")
    elif out.get("join_leave"):
        notes.append(
            "join_leave: joins and leaves go to every subscriber, also those that did not ask "
            "(Centrifugo's force_push_join_leave)"
        )

    for action in _ACTIONS:
        _translate_action(action, raw, out, policy, flag, problems)
    # Centrifugo keeps client publications in a channel's history: Syncline does when told.
    implied = CLIENT_PUBLISH_HISTORY in known and CLIENT_PUBLISH_HISTORY not in raw
    if implied and out.get("allow_publish") and out.get("history_size"):
        out[CLIENT_PUBLISH_HISTORY] = True
        notes.append(
            "client publications take offsets and enter history, as in Centrifugo "
            f"({CLIENT_PUBLISH_HISTORY} = true; docs/topics/client-publish-history.md)"
        )
    return result


def _translate_action(
    action: str,
    raw: Mapping[str, Any],
    out: dict[str, Any],
    policy: str,
    flag: Any,
    problems: list[str],
) -> None:
    """allow_<action>_for_subscriber/client/anonymous → allow_<action>, where they mean it.

    Syncline lets a client do the action where it may subscribe (a subscriber at once), so
    for_subscriber is the same power; for_client is the same where any user may subscribe;
    anonymous clients may do it exactly when the namespace is public.
    """
    names = [f"allow_{action}_for_{who}" for who in ("subscriber", "client", "anonymous")]
    for_subscriber, for_client, for_anonymous = (flag(n) for n in names)
    if not {*names} & raw.keys():
        return
    own = f"allow_{action}"
    if own in raw:
        problems.append(f"give {own} or Centrifugo's {names[0]}/{names[1]}, not both")
        return
    allowed = for_subscriber or for_client
    if for_anonymous and not allowed:
        problems.append(f"{names[2]} needs {names[0]} or {names[1]} (as in Centrifugo)")
        return
    if for_client and policy not in ("authenticated", "public"):
        problems.append(
            f"{names[1]}: Syncline lets a client {action} only where it may subscribe; in a "
            f"namespace with subscribe = '{policy}' use {names[0]}"
        )
    if allowed and (policy == "public") != for_anonymous:
        if for_anonymous:
            problems.append(
                f"{names[2]}: anonymous clients may {action} only in a public namespace "
                "(allow_subscribe_for_anonymous)"
            )
        else:
            problems.append(
                f"{names[0]}/{names[1]} in a public namespace: Syncline lets anonymous "
                f"clients {action} there too; add {names[2]} = true to accept it"
            )
    out[own] = allowed
