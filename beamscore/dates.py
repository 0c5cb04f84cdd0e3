"""``--date``: the day a scheduled job scores, filled into its input and output paths.

A cron line and an Airflow task run the same command: cron leaves ``--date`` out (today,
in UTC) or says ``--date yesterday``; Airflow passes ``--date {{ ds }}``; a backfill passes
the day it redoes. :func:`fill_date` puts the day into a path: ``{date}`` becomes
``YYYY-MM-DD`` and the strftime fields in :data:`FIELDS` (``%Y``, ``%m``, ``%d``...) their
value; ``%%`` is a literal ``%``, and any other ``%`` is refused, so that a typo (``%D``,
``%H`` on a date) is one line at launch rather than a glob that matches nothing.

Nothing here imports TensorFlow or Beam: a bad date is reported before either loads.
"""

from __future__ import annotations

import datetime as dt
import re

from beamscore.errors import BeamscoreError

__all__ = ["FIELDS", "fill_date", "parse_date"]

#: the strftime fields a path may hold: those of a day (no time of day), the same on every platform
FIELDS = {
    "Y": "year, 4 digits",
    "y": "year, 2 digits",
    "m": "month, 01-12",
    "d": "day of the month, 01-31",
    "j": "day of the year, 001-366",
    "F": "%Y-%m-%d",
    "G": "ISO year",
    "V": "ISO week, 01-53",
    "u": "ISO weekday, 1 (Monday) - 7",
    "U": "week of the year (Sunday first), 00-53",
    "W": "week of the year (Monday first), 00-53",
    "w": "weekday, 0 (Sunday) - 6",
    "b": "month name, abbreviated (Dec)",
    "B": "month name (December)",
    "a": "weekday name, abbreviated (Tue)",
    "A": "weekday name (Tuesday)",
}
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_FIELD = re.compile(r"%(.?)|\{date\}", re.DOTALL)


def parse_date(value: str | dt.date | None, flag: str = "--date") -> dt.date:
    """The day of ``value``: ``YYYY-MM-DD``, ``today`` or ``yesterday`` (in UTC), a
    :class:`datetime.date`, or ``None`` for today in UTC. Anything else is refused in one line."""
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    today = dt.datetime.now(dt.UTC).date()
    if text == "today":
        return today
    if text == "yesterday":
        return today - dt.timedelta(days=1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError as exc:
            raise BeamscoreError(f"{flag} {value!r}: {exc}; expected YYYY-MM-DD, today or yesterday") from None
    raise BeamscoreError(f"{flag} {value!r}: expected a day as YYYY-MM-DD (e.g. 2026-12-01), today or yesterday")


def fill_date(template: str, day: dt.date, flag: str) -> str:
    """``template`` with ``{date}`` and the strftime fields of :data:`FIELDS` filled from
    ``day``; ``%%`` is ``%``. ``flag`` names the path in the error a bad field gives."""

    def fill(match: re.Match) -> str:
        if match.group(0) == "{date}":
            return day.isoformat()
        code = match.group(1)
        if code == "%":
            return "%"
        if code in FIELDS:
            return _field(day, code)
        shown = f"%{code}" if code else "a lone % at the end"
        raise BeamscoreError(
            f"{flag} {template!r}: {shown} is not a date field; fields: "
            + " ".join(f"%{c}" for c in FIELDS)
            + " and {date}; write %% for a literal %"
        )

    return _FIELD.sub(fill, template)


def _field(day: dt.date, code: str) -> str:
    """One strftime field, computed here (not by the C library: the same text on every
    platform and in every locale)."""
    iso = day.isocalendar()
    values = {
        "Y": f"{day.year:04d}",
        "y": f"{day.year % 100:02d}",
        "m": f"{day.month:02d}",
        "d": f"{day.day:02d}",
        "j": f"{day.timetuple().tm_yday:03d}",
        "F": day.isoformat(),
        "G": f"{iso.year:04d}",
        "V": f"{iso.week:02d}",
        "u": str(iso.weekday),
        "U": f"{(day.timetuple().tm_yday + 6 - (day.isoweekday() % 7)) // 7:02d}",
        "W": f"{(day.timetuple().tm_yday + 6 - day.weekday()) // 7:02d}",
        "w": str(day.isoweekday() % 7),
        "b": _MONTHS[day.month - 1][:3],
        "B": _MONTHS[day.month - 1],
        "a": _DAYS[day.weekday()][:3],
        "A": _DAYS[day.weekday()],
    }
    return values[code]
