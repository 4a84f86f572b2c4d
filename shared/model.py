"""The base of every wire model: a msgspec `Struct` whose limits (lengths, ranges, patterns,
enums) live on its fields' `Meta`, decoded once from JSON and refused with a `WireError` that
names the field and says, from those same limits, what the field must be.

A check that a field's type cannot say (one field against another, a time that must exist in
UTC) goes in `__post_init__` and raises `invalid(field, message)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import msgspec
from msgspec import inspect

MAX_JSON_DEPTH = 32  # nesting a request may have (the deepest model needs 4)


class WireError(ValueError):
    """A field of a request is missing or not of the form the contract says."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class MalformedJSON(WireError):
    """The body is not JSON at all (empty, cut short, not UTF-8, nested beyond reason)."""


_MARK = "\x1f"  # starts a message raised by a model's own check: "<mark><field>\x1f<text>"


def invalid(field_name: str, message: str) -> ValueError:
    """The error a model's `__post_init__` raises: msgspec turns it into a validation error
    with the path, and `Model` back into a WireError naming `field_name`."""
    return ValueError(f"{_MARK}{field_name}{_MARK}{message}")


def utc_time(value: datetime | None, field_name: str) -> None:
    """Refuse a time whose conversion to UTC overflows (year 1 or 9999 with an offset)."""
    if value is None:
        return
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise invalid(field_name, "must be a time that exists in UTC") from None


class Model(msgspec.Struct, kw_only=True):
    """A request or reply body. `from_json` takes decoded JSON, `decode` the raw bytes; both
    raise WireError naming the field. `to_json` renders the body."""

    # What a refused unknown field is told (models with forbid_unknown_fields=True)
    unknown_field: ClassVar[str] = "is not a field of this request"

    @classmethod
    def from_json(cls, data: object) -> Self:
        try:
            value = msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise wire_error(cls, str(exc)) from None
        _refuse_nul(value, "")
        return value

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        if not raw:
            raise MalformedJSON("body", "a JSON body is required")
        if _too_deep(raw):
            raise MalformedJSON("body", f"is nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            value = msgspec.json.decode(raw, type=cls)
        except msgspec.ValidationError as exc:
            raise wire_error(cls, str(exc)) from None
        except msgspec.DecodeError:
            raise MalformedJSON("body", "the body is not valid JSON") from None
        _refuse_nul(value, "")
        return value

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = msgspec.to_builtins(self)
        return body

    def encode(self) -> bytes:
        return msgspec.json.encode(self)


def _too_deep(raw: bytes) -> bool:
    """Whether brackets nest deeper than MAX_JSON_DEPTH (a cheap scan that ignores strings'
    contents; msgspec would recurse into each level before the type refused it)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _strings(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, path)
            yield from _strings(item, path)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, path)


def _refuse_nul(value: object, path: str) -> None:
    """No text of a request holds NUL: PostgreSQL cannot store it, and no field needs it."""
    for where, text in _strings(value, path):
        if "\x00" in text:
            raise WireError(where or "body", "must not contain NUL characters")


_AT = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_FIELD = re.compile(r"`(?P<name>[^`]+)`")


def wire_error(model: type[Model], message: str) -> WireError:
    """msgspec's validation message as a WireError naming the field, saying what it must be."""
    match = _AT.match(message)
    text, raw_path = (match["text"], match["path"] or "") if match else (message, "")
    path = re.sub(r"\[\d+\]", "", raw_path).lstrip(".")
    parent = path
    if text.startswith(_MARK):
        _, name, said = text.split(_MARK, 2)
        return WireError(_join(parent, name) if name != "body" or parent else "body", said)
    named = _FIELD.search(text)
    if text.startswith("Object missing required field") and named:
        return WireError(_join(parent, named["name"]), "is required")
    if text.startswith("Object contains unknown field") and named:
        return WireError(_join(parent, named["name"]), model.unknown_field)
    kind = _type_at(inspect.type_info(model), raw_path)
    mismatch = ", got `" in text
    if not path:
        return WireError("body", "must be a JSON object")
    return WireError(path, describe(kind, mismatch=mismatch) if kind else text)


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _strip(kind: inspect.Type) -> inspect.Type:
    """The type itself: metadata unwrapped, None (and UNSET) left out of a union."""
    while True:
        if isinstance(kind, inspect.Metadata):
            kind = kind.type
        elif isinstance(kind, inspect.UnionType):
            rest = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
            if len(rest) != 1:
                return kind
            kind = rest[0]
        else:
            return kind


def _type_at(kind: inspect.Type, raw_path: str) -> inspect.Type | None:
    for step in re.findall(r"\.[^.\[]+|\[\d+\]", raw_path):
        kind = _strip(kind)
        if step.startswith("["):
            if not isinstance(kind, inspect.ListType):
                return None
            kind = kind.item_type
            continue
        if not isinstance(kind, inspect.StructType):
            return None
        found = [f for f in kind.fields if f.encode_name == step[1:]]
        if not found:
            return None
        kind = found[0].type
    return kind


def _description(kind: inspect.Type) -> str | None:
    while isinstance(kind, inspect.Metadata | inspect.UnionType):
        if isinstance(kind, inspect.Metadata):
            said = (kind.extra_json_schema or {}).get("description")
            if said:
                return str(said)
            kind = kind.type
        else:
            kind = _strip(kind)
            if isinstance(kind, inspect.UnionType):
                return None
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounds(lo: float | None, lo_open: bool, hi: float | None) -> str:
    parts = []
    if lo is not None:
        parts.append(f"more than {_number(lo)}" if lo_open else f"at least {_number(lo)}")
    if hi is not None:
        parts.append(f"at most {_number(hi)}")
    return " and ".join(parts)


def describe(kind: inspect.Type, *, mismatch: bool = False) -> str:
    """What a value of `kind` must be, in words, from its limits."""
    said = _description(kind)
    base = _strip(kind)
    if isinstance(base, inspect.IntType | inspect.FloatType):
        noun = "an integer" if isinstance(base, inspect.IntType) else "a number"
        lo = base.gt if base.gt is not None else base.ge
        bounds = _bounds(lo, base.gt is not None, base.le)
        return f"must be {noun}" if mismatch or not bounds else f"must be {bounds}"
    if isinstance(base, inspect.StrType):
        if mismatch:
            return "must be a string"
        if base.pattern:  # its description says what the pattern means, when it has one
            return f"must be {said}" if said else f"must match {base.pattern}"
        return f"must be {base.min_length or 0} to {base.max_length} characters long"
    if isinstance(base, inspect.LiteralType):
        return "must be one of " + ", ".join(str(v) for v in base.values)
    if isinstance(base, inspect.DateTimeType):
        return "must be an RFC 3339 timestamp with a time zone (e.g. 'Z' or '+00:00')"
    if isinstance(base, inspect.BoolType):
        return "must be true or false"
    if isinstance(base, inspect.ListType):
        if mismatch:
            return "must be a list"
        return f"must be a list of at most {base.max_length} items"
    if isinstance(base, inspect.DictType):
        return "must be an object of strings"
    if isinstance(base, inspect.StructType):
        return "must be an object" + (" or null" if base is not kind else "")
    return said or "is not of the form the contract says"
