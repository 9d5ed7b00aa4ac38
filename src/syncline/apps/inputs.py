"""Input rules every request shares: text PostgreSQL can store, bounded numbers, strict ids."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from syncline.core.codes import ErrorCode
from syncline.rpc import RpcError

M = TypeVar("M", bound=BaseModel)

# PostgreSQL's bigint, the widest integer column (and all orjson encodes signed).
MIN_BIGINT = -(1 << 63)
MAX_BIGINT = (1 << 63) - 1
# orjson refuses to encode more than 255 levels; no real payload comes near this.
MAX_JSON_DEPTH = 64
# NUL: PostgreSQL's text and jsonb cannot hold it. U+D800..U+DFFF in a Python str are always
# lone surrogates (json.loads joins a proper pair into one code point), which UTF-8 cannot
# encode, so neither psycopg nor orjson can send them anywhere.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Escaped when an error message quotes the input: the message must be printable and encodable.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_QUOTED = 64


def text_problem(value: str) -> str | None:
    """Why PostgreSQL could not store this text, or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL (U+0000)"
    return "must not contain a lone surrogate (U+D800-U+DFFF)"


def printable(value: str, limit: int | None = _MAX_QUOTED) -> str:
    """The text with control characters and lone surrogates escaped, cut to `limit`."""
    if limit is not None and len(value) > limit:
        value = value[:limit] + "…"
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def value_problem(value: Any) -> tuple[str, tuple[str, ...]] | None:
    """Why a decoded JSON value could not be stored (as text, bigint or jsonb), and where.

    Walks the whole value, dict keys included, without recursion (a deep value must not
    exhaust the stack); where is the path inside the value, e.g. ("items", "0", "name").
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        problem: str | None = None
        if len(path) > MAX_JSON_DEPTH:
            return f"must not be nested more than {MAX_JSON_DEPTH} levels deep", ()
        if isinstance(item, str):
            problem = text_problem(item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not MIN_BIGINT <= item <= MAX_BIGINT:
                problem = "must be an integer within -2^63..2^63-1"
        elif isinstance(item, float):
            if not math.isfinite(item):
                problem = "must be a finite number (no NaN or Infinity)"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = printable(str(key))
                if isinstance(key, str) and (bad := text_problem(key)) is not None:
                    return f"a key {bad}", (*path, name)
                stack.append((child, (*path, name)))
        elif isinstance(item, list | tuple):
            stack.extend((child, (*path, str(i))) for i, child in enumerate(item))
        if problem is not None:
            return problem, path
    return None


def _check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError("unstorable_text", problem)
    return value


# For text outside request bodies (query parameters): bodies get the rule from Input.
Text = Annotated[str, AfterValidator(_check_text)]


class Input(BaseModel):
    """Base of every request body (REST, RPC, server API).

    Unknown fields are refused, not ignored (a typo must not be silently dropped). Strict:
    an integer is a JSON number, never "1" or 1.0; a boolean is true or false. No string
    anywhere in the body, however deep, may hold NUL or a lone surrogate, and no number may
    be beyond a bigint or non-finite: each is a 422 naming the field, not a database error.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _printable_keys(cls, data: Any) -> Any:
        # An unknown key is named in the error: escape it first, or the error message itself
        # could not be encoded (a lone surrogate), let alone shown.
        if isinstance(data, dict) and any(
            isinstance(k, str) and _UNPRINTABLE.search(k) for k in data
        ):
            return {printable(k) if isinstance(k, str) else k: v for k, v in data.items()}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        found = value_problem(value)
        if found is not None:
            # `at` (the path inside the field) is added to the error's location by describe().
            problem, at = found
            raise PydanticCustomError(
                "unstorable_value", "{problem}", {"problem": problem, "at": at}
            )
        return value


def describe(error: ErrorDetails, skip: Sequence[str] = ()) -> str:
    """One validation error as "field.path: message", printable whatever the input was."""
    loc = list(error["loc"])
    if loc and loc[0] in skip:
        loc = loc[1:]
    loc.extend((error.get("ctx") or {}).get("at", ()))
    where = ".".join(printable(str(part)) for part in loc)
    message = printable(str(error["msg"]), limit=None)
    return f"{where}: {message}" if where else message


def rpc_args(model: type[M], data: Any) -> M:
    """An RPC's data as ``model``; malformed arguments are the protocol's 107 bad request (the
    SDKs know it), with the REST code and the field in the message, not an app error code."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = describe(exc.errors(include_url=False)[0])
        raise RpcError(ErrorCode.BAD_REQUEST, f"invalid_input: {detail}") from None
