"""Clock rules for notifications (pure functions over aware datetimes): quiet hours and digest time."""

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(now: dt.datetime, tz_name: str, start: dt.time | None, end: dt.time | None) -> dt.datetime | None:
    """The end of the quiet hours `now` falls in (aware, UTC), or None when `now` is not quiet.

    Times are local to the user's zone; a window may wrap midnight (22:00–07:00); start == end
    means no quiet hours.
    """
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(zone(tz_name))
    t = local.time().replace(tzinfo=None)
    quiet = start <= t < end if start < end else (t >= start or t < end)
    if not quiet:
        return None
    end_day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    return _local_instant(end_day, end, local.tzinfo).astimezone(dt.UTC)


def next_digest_at(now: dt.datetime, tz_name: str, hour: int) -> dt.datetime:
    """The next `hour`:00 in the user's zone strictly after `now` (aware, UTC)."""
    tz = zone(tz_name)
    local = now.astimezone(tz)
    candidate = _local_instant(local.date(), dt.time(hour), tz)
    if candidate <= local:
        candidate = _local_instant(local.date() + dt.timedelta(days=1), dt.time(hour), tz)
    return candidate.astimezone(dt.UTC)


def _local_instant(day: dt.date, at: dt.time, tz: dt.tzinfo) -> dt.datetime:
    # A wall time skipped by a DST jump resolves forward (zoneinfo's fold=0 rule), which is fine here.
    return dt.datetime.combine(day, at, tzinfo=tz)
