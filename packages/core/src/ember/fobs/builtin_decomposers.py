"""Decomposers for standard-library types; core registers them through the plugin hook."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections import OrderedDict
from typing import Any

from ember.fobs.decomposer import Context
from ember.fobs.errors import FOBSError


def _expect(data: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(data, kind) or (isinstance(data, bool) and kind is int):
        raise FOBSError(f"malformed {what}: got {type(data).__name__}")
    return data


def _ints(data: Any, n: int, what: str) -> list[int]:
    if (
        not isinstance(data, list)
        or len(data) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in data)
    ):
        raise FOBSError(f"malformed {what}: expected {n} integers")
    return data


def _tz_to_wire(tz: dt.tzinfo | None, ref: dt.datetime | None) -> list[int] | None:
    if tz is None:
        return None
    offset = tz.utcoffset(ref)
    if offset is None:
        return None
    return [offset.days, offset.seconds, offset.microseconds]


def _tz_from_wire(data: Any, what: str) -> dt.timezone | None:
    if data is None:
        return None
    days, seconds, micros = _ints(data, 3, what)
    return dt.timezone(dt.timedelta(days=days, seconds=seconds, microseconds=micros))


class DatetimeDecomposer:
    """``datetime.datetime``; an aware datetime keeps its UTC offset (not a zone name)."""

    def supported_type(self) -> type:
        return dt.datetime

    def decompose(self, obj: dt.datetime, ctx: Context) -> Any:
        fields = [
            obj.year,
            obj.month,
            obj.day,
            obj.hour,
            obj.minute,
            obj.second,
            obj.microsecond,
            obj.fold,
        ]
        return [fields, _tz_to_wire(obj.tzinfo, obj)]

    def recompose(self, data: Any, ctx: Context) -> dt.datetime:
        if not isinstance(data, list) or len(data) != 2:
            raise FOBSError("malformed datetime")
        y, mo, d, h, mi, s, us, fold = _ints(data[0], 8, "datetime")
        return dt.datetime(y, mo, d, h, mi, s, us, _tz_from_wire(data[1], "datetime"), fold=fold)


class DateDecomposer:
    """``datetime.date``."""

    def supported_type(self) -> type:
        return dt.date

    def decompose(self, obj: dt.date, ctx: Context) -> Any:
        return obj.toordinal()

    def recompose(self, data: Any, ctx: Context) -> dt.date:
        return dt.date.fromordinal(_expect(data, int, "date"))


class TimeDecomposer:
    """``datetime.time``; an aware time keeps its UTC offset."""

    def supported_type(self) -> type:
        return dt.time

    def decompose(self, obj: dt.time, ctx: Context) -> Any:
        fields = [obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold]
        return [fields, _tz_to_wire(obj.tzinfo, None)]

    def recompose(self, data: Any, ctx: Context) -> dt.time:
        if not isinstance(data, list) or len(data) != 2:
            raise FOBSError("malformed time")
        h, mi, s, us, fold = _ints(data[0], 5, "time")
        return dt.time(h, mi, s, us, _tz_from_wire(data[1], "time"), fold=fold)


class TimedeltaDecomposer:
    """``datetime.timedelta``."""

    def supported_type(self) -> type:
        return dt.timedelta

    def decompose(self, obj: dt.timedelta, ctx: Context) -> Any:
        return [obj.days, obj.seconds, obj.microseconds]

    def recompose(self, data: Any, ctx: Context) -> dt.timedelta:
        days, seconds, micros = _ints(data, 3, "timedelta")
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)


class UUIDDecomposer:
    """``uuid.UUID``."""

    def supported_type(self) -> type:
        return uuid.UUID

    def decompose(self, obj: uuid.UUID, ctx: Context) -> Any:
        return obj.bytes

    def recompose(self, data: Any, ctx: Context) -> uuid.UUID:
        return uuid.UUID(bytes=_expect(data, bytes, "UUID"))


class DecimalDecomposer:
    """``decimal.Decimal``, exactly (NaN, infinities and signed zeros included)."""

    def supported_type(self) -> type:
        return decimal.Decimal

    def decompose(self, obj: decimal.Decimal, ctx: Context) -> Any:
        return str(obj)

    def recompose(self, data: Any, ctx: Context) -> decimal.Decimal:
        try:
            return decimal.Decimal(_expect(data, str, "Decimal"))
        except decimal.InvalidOperation as exc:
            raise FOBSError(f"malformed Decimal {data[:40]!r}") from exc


class OrderedDictDecomposer:
    """``collections.OrderedDict`` (what ``state_dict()`` returns)."""

    def supported_type(self) -> type:
        return OrderedDict

    def decompose(self, obj: OrderedDict[Any, Any], ctx: Context) -> Any:
        return dict(obj)

    def recompose(self, data: Any, ctx: Context) -> OrderedDict[Any, Any]:
        return OrderedDict(_expect(data, dict, "OrderedDict"))
