"""Typed fields of JSON objects: every reader names the field it rejects.

Workloads, plans, scenarios and cost queries read their JSON values through these, so a
value of the wrong type or shape at any level, a string where a number belongs, a number
that is not finite, or an unknown field, is a ``GraftInputError`` naming the field (e.g.
``stages[0].batch``), the same way in every command. ``where`` is the prefix of the
field names (``"clients[1]."``, ``""`` at the top level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from graft.errors import GraftInputError

T = TypeVar("T")

#: Longest rendering of a rejected value in a message (the rest is elided).
SHOW_CHARS = 60


def show(value: Any) -> str:
    """``repr(value)``, cut to ``SHOW_CHARS`` characters: messages stay one short line."""
    text = repr(value)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def type_name(value: Any) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def obj(raw: Any, name: str, allowed: Sequence[str], *, prefix: str | None = None,
        flow: str | None = None) -> dict:
    """``raw`` as an object with no field outside ``allowed``. ``name`` names it in
    messages; an unknown field is named ``<prefix><field>`` (``prefix`` defaults to
    ``name + "."``)."""
    if not isinstance(raw, dict):
        raise GraftInputError(f"must be an object, got {type_name(raw)}", field=name,
                              flow=flow)
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        prefix = f"{name}." if prefix is None else prefix
        raise GraftInputError(f"unknown field; known: {', '.join(allowed)}",
                              field=f"{prefix}{unknown[0]}", flow=flow)
    return raw


def _absent(default: T | None, name: str) -> T:
    """What an absent field reads as: ``default``, or an error when it is required."""
    if default is None:
        raise GraftInputError("is required", field=name)
    return default


def array(raw: dict, key: str, where: str, *, default: list | None = None,
          max_items: int | None = None) -> list:
    """``raw[key]`` as a list (``default`` when absent; required when that is None)."""
    name = f"{where}{key}"
    if key not in raw:
        return _absent(default, name)
    v = raw[key]
    if not isinstance(v, list):
        raise GraftInputError(f"must be a list, got {type_name(v)}", field=name)
    if max_items is not None and len(v) > max_items:
        raise GraftInputError(f"holds {len(v)} items, more than {max_items}", field=name)
    return v


def integers(raw: dict, key: str, where: str, *, default: list | None = None) -> list[int]:
    """``raw[key]`` as a list of integers (``default`` when absent)."""
    values = array(raw, key, where, default=default)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise GraftInputError(f"must be a list of integers, got {show(v)} in it",
                                  field=f"{where}{key}")
    return values


def strings(raw: dict, key: str, where: str, *, default: list | None = None) -> list[str]:
    """``raw[key]`` as a list of non-empty strings (``default`` when absent)."""
    values = array(raw, key, where, default=default)
    for v in values:
        if not isinstance(v, str) or not v:
            raise GraftInputError(f"must be a list of non-empty strings, got {show(v)} in it",
                                  field=f"{where}{key}")
    return values


def number(raw: dict, key: str, where: str, *, default: float | None = None,
           minimum: float | None = None, exclusive: bool = False,
           maximum: float | None = None) -> float:
    """``raw[key]`` as a finite number within the bounds (``default`` when absent; required
    when that is None). A string such as ``"8"`` is not a number."""
    name = f"{where}{key}"
    if key not in raw:
        return _absent(default, name)
    v = raw[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise GraftInputError(f"must be a finite number, got {show(v)}", field=name)
    if minimum is not None and (v <= minimum if exclusive else v < minimum):
        raise GraftInputError(f"must be {'>' if exclusive else '>='} {minimum:g}, got {v!r}",
                              field=name)
    if maximum is not None and v > maximum:
        raise GraftInputError(f"must be <= {maximum:g}, got {v!r}", field=name)
    return float(v)


def optional_number(raw: dict, key: str, where: str, **bounds: Any) -> float | None:
    """``number`` that may be absent or null (then None)."""
    return None if raw.get(key) is None else number(raw, key, where, **bounds)


def integer(raw: dict, key: str, where: str, *, default: int | None = None,
            minimum: int | None = 0, maximum: int | None = None) -> int:
    """``raw[key]`` as an integer within the bounds (``default`` when absent; required when
    that is None). ``8.0`` and ``"8"`` are not integers."""
    name = f"{where}{key}"
    if key not in raw:
        return _absent(default, name)
    v = raw[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise GraftInputError(f"must be an integer, got {show(v)}", field=name)
    if minimum is not None and v < minimum:
        raise GraftInputError(f"must be an integer >= {minimum}, got {show(v)}", field=name)
    if maximum is not None and v > maximum:
        raise GraftInputError(f"must be an integer <= {maximum}, got {show(v)}", field=name)
    return v


def string(raw: dict, key: str, where: str, *, default: str | None = None,
           choices: Sequence[str] | None = None) -> str:
    """``raw[key]`` as a non-empty string, one of ``choices`` if given (``default`` when
    absent; required when that is None)."""
    name = f"{where}{key}"
    if key not in raw:
        return _absent(default, name)
    v = raw[key]
    if not isinstance(v, str) or not v:
        raise GraftInputError(f"must be a non-empty string, got {show(v)}", field=name)
    if choices is not None and v not in choices:
        raise GraftInputError(f"must be one of {', '.join(choices)}; got {show(v)}",
                              field=name)
    return v


def optional_string(raw: dict, key: str, where: str) -> str | None:
    """``string`` that may be absent or null (then None)."""
    return None if raw.get(key) is None else string(raw, key, where)
