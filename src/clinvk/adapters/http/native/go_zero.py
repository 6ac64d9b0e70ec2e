"""Read a native request body the way the original Go server (clinvoker) reads it.

Go decodes JSON into structs whose zero values mean "not set": `"model": ""`,
`"max_turns": 0`, `"extra": null` and an absent field are all the same to it, and clients
written in Go send them all the time (a struct without `omitempty` marshals every field).
Before the strict decode, `unset_zero_values` drops such values from optional fields, so
they fall back to clinvk's defaults instead of failing validation. Required fields are
never dropped (an empty `prompt` stays an error that names it), and a value that is wrong
for another reason (`"max_turns": -1`, `"approval_mode": "yes"`) still gets its 400.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from msgspec import inspect as mi

#: Field name -> (required, zero values that mean unset, element struct type of a list)
_Plan = dict[str, tuple[bool, tuple[Any, ...], type | None]]


def _accepts_zero_int(t: mi.Type) -> bool:
    """Whether 0 is a valid value of `t` (then 0 is a real value, not "unset")."""
    if isinstance(t, mi.UnionType):
        return any(_accepts_zero_int(x) for x in t.types)
    if isinstance(t, (mi.IntType, mi.FloatType)):
        return (t.ge is None or t.ge <= 0) and (t.gt is None or t.gt < 0)
    return isinstance(t, mi.AnyType)


def _list_of_struct(t: mi.Type) -> type | None:
    if isinstance(t, mi.UnionType):
        for x in t.types:
            found = _list_of_struct(x)
            if found is not None:
                return found
    if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StructType):
        return t.item_type.cls
    return None


def _is_int(t: mi.Type) -> bool:
    if isinstance(t, mi.UnionType):
        return any(_is_int(x) for x in t.types)
    return isinstance(t, mi.IntType)


@cache
def _plan(struct: type) -> _Plan:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    plan: _Plan = {}
    for f in info.fields:
        zeros: tuple[Any, ...] = () if f.required else (None, "")
        if not f.required and _is_int(f.type) and not _accepts_zero_int(f.type):
            zeros += (0,)
        plan[f.encode_name] = (f.required, zeros, _list_of_struct(f.type))
    return plan


def _is_zero(value: Any, zeros: tuple[Any, ...]) -> bool:
    # `False == 0` in Python; a bool is never an int's zero here.
    return any(value is z if z is None else (type(value) is type(z) and value == z)
               for z in zeros)


def unset_zero_values(body: Any, struct: type) -> Any:
    """`body` (decoded JSON) without the Go zero values of `struct`'s optional fields.

    Lists of nested structs (`tasks`, `steps`) are cleaned the same way. Anything that is
    not a JSON object is returned unchanged, for the strict decode to refuse.
    """
    if not isinstance(body, dict):
        return body
    plan = _plan(struct)
    out: dict[str, Any] = {}
    for key, value in body.items():
        entry = plan.get(key)
        if entry is None:
            out[key] = value  # unknown: kept, so the strict decode names it
            continue
        _required, zeros, item = entry
        if _is_zero(value, zeros):
            continue
        if item is not None and isinstance(value, list):
            value = [unset_zero_values(v, item) for v in value]
        out[key] = value
    return out


class GoTolerantDecoder:
    """A strict msgspec decoder for `struct` that first drops Go zero values."""

    def __init__(self, struct: type) -> None:
        self.struct = struct

    def decode(self, body: bytes) -> Any:
        """Decode `body` into `struct`; raises msgspec errors like a Decoder."""
        raw = msgspec.json.decode(body)
        return msgspec.convert(unset_zero_values(raw, self.struct), self.struct)
