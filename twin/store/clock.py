"""The store's time zone: its timestamps are naive and local to ``meta.timezone``; answers carry the offset."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import pandas as pd

from twin.errors import StoreError
from twin.store.schema import DEFAULT_TIMEZONE
from twin.store.store import meta_value


def store_timezone(con: duckdb.DuckDBPyConnection) -> ZoneInfo:
    """The zone of the store's timestamps (``meta.timezone``; ``DEFAULT_TIMEZONE`` when unset).

    Raises
    ------
    StoreError
        When ``meta.timezone`` names no IANA zone.
    """
    name = meta_value(con, "timezone") or DEFAULT_TIMEZONE  # remembered per PostgreSQL store connection
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StoreError(f"meta.timezone {name!r} is no IANA time zone; set it to one such as "
                         f"{DEFAULT_TIMEZONE!r}.") from None


def with_offset(stamp: object, zone: ZoneInfo) -> str | None:
    """A store timestamp (naive, in ``zone``) as ISO 8601 with its offset (``2026-11-26T08:50:00+08:00``)."""
    if stamp is None or pd.isna(stamp):
        return None
    stamp = pd.Timestamp(stamp)
    return (stamp.tz_convert(zone) if stamp.tzinfo else stamp.tz_localize(zone)).isoformat()


def to_store_time(stamp: pd.Timestamp, zone: ZoneInfo) -> pd.Timestamp:
    """A timestamp as the store keeps it: naive in ``zone`` (one with an offset is converted; a naive one is kept)."""
    return stamp.tz_convert(zone).tz_localize(None) if stamp.tzinfo else stamp


def now_in(zone: ZoneInfo, *, unit: str = "s") -> pd.Timestamp:
    """The wall clock in ``zone``, naive, floored to ``unit`` (a new case's time)."""
    return pd.Timestamp.now(tz=zone).tz_localize(None).floor(unit)


def store_now(con: duckdb.DuckDBPyConnection, *, unit: str = "s") -> pd.Timestamp:
    """The wall clock as the store keeps times: naive, in its zone (:func:`store_timezone`)."""
    return now_in(store_timezone(con), unit=unit)


def district_now(con: duckdb.DuckDBPyConnection, *, unit: str = "us") -> pd.Timestamp:
    """The district's clock: ``meta.now`` when set (the demo's fixed day), else :func:`store_now`.

    What deadlines, overdue cases and evaluation windows are measured against.
    """
    now = meta_value(con, "now")
    return pd.Timestamp(now) if now is not None else store_now(con, unit=unit)
