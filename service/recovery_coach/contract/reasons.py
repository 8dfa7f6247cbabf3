"""Pydantic's validation errors in words a person reads: one place for the payloads, the
config file and simulate's input lines, each of which says where the error is its own way."""

from __future__ import annotations

from typing import Any

_WORDS = {
    "missing": "is required",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "finite_number": "must be a finite number",
    "too_long": "is too long",
    "string_too_long": "is too long",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must not contain MQTT wildcards (# or +)",
    "timezone_aware": "must include a time-zone offset, e.g. 2026-03-01T18:30:00+01:00",
}
_TIME = ("datetime_parsing", "datetime_type", "datetime_from_date_parsing")
_NUMBER = ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float")
_MAPPING = ("model_type", "dict_type", "model_attributes_type")
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "above"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "below"),
}


def what_is_wrong(err: Any, *, mapping: str, unknown_key: str) -> str:
    """The predicate for one error ("is required", "must be at least 0"), to follow the
    place it is in. `mapping` names an object where one is expected ("a JSON object");
    `unknown_key` says what to do about a key that is not known."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _WORDS:
        return _WORDS[kind]
    if kind in _TIME:
        return "must be an ISO 8601 time with an offset, e.g. 2026-03-01T18:30:00+01:00"
    if kind in _NUMBER:
        return f"must be a {'whole ' if kind.startswith('int') else ''}number"
    if kind in _MAPPING:
        return f"must be {mapping}"
    if kind == "extra_forbidden":
        return f"is not a known key ({unknown_key})"
    if kind == "literal_error":
        return f"must be one of {str(ctx.get('expected', '')).replace(chr(39), '')}"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"must be {words} {shown}"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]
