"""Cron schedules as Karpenter's disruption budgets write them: five fields, UTC, robfig/cron
semantics (the day-of-month and day-of-week fields OR'ed when both are restricted), and macros."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rightsizer.core.errors import InvalidSchedule

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


@dataclass(frozen=True, slots=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool
    weekdays_star: bool

    def day_matches(self, year: int, month: int, day: int) -> bool:
        if month not in self.months:
            return False
        weekday = (calendar.weekday(year, month, day) + 1) % 7
        dom = day in self.days
        dow = weekday in self.weekdays
        # Both restricted: either may match (classic cron); otherwise both must.
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def matches(self, when: datetime) -> bool:
        when = when.astimezone(UTC)
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and self.day_matches(when.year, when.month, when.day)
        )


def _field(text: str, low: int, high: int, names: dict[str, int], expr: str) -> tuple[frozenset[int], bool]:
    """One cron field → its values, and whether it is an unrestricted star (robfig's star bit)."""
    values: set[int] = set()
    star = False

    def number(token: str) -> int:
        token = token.upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise InvalidSchedule(expr, f"{token!r} is not a number")
        return int(token)

    for part in text.split(","):
        range_text, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidSchedule(expr, f"bad step in {part!r}")
            step = int(step_text)
        if range_text in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        elif "-" in range_text:
            first, _, last = range_text.partition("-")
            start, end = number(first), number(last)
        else:
            start = number(range_text)
            end = high if slash else start
        if not low <= start <= end <= high:
            raise InvalidSchedule(expr, f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def parse_cron(expression: str) -> CronSchedule:
    text = _MACROS.get(expression.strip().lower(), expression.strip())
    fields = text.split()
    if len(fields) != 5:
        raise InvalidSchedule(expression, f"{len(fields)} fields")
    minutes, _ = _field(fields[0], 0, 59, {}, expression)
    hours, _ = _field(fields[1], 0, 23, {}, expression)
    days, days_star = _field(fields[2], 1, 31, {}, expression)
    months, _ = _field(fields[3], 1, 12, _MONTHS, expression)
    weekdays, weekdays_star = _field(fields[4], 0, 7, _WEEKDAYS, expression)
    weekdays = frozenset(v % 7 for v in weekdays)  # 7 is Sunday too
    return CronSchedule(minutes, hours, days, months, weekdays, days_star, weekdays_star)


def last_fire(schedule: CronSchedule, now: datetime, after: datetime) -> datetime | None:
    """The latest minute in (after, now] at which the schedule fires, or None.

    Walks days backwards and only looks inside matching days, so long windows stay cheap.
    """
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    after = after.astimezone(UTC)
    hours = sorted(schedule.hours, reverse=True)
    minutes = sorted(schedule.minutes, reverse=True)
    day = now.replace(hour=0, minute=0)
    while day + timedelta(days=1) > after:
        if schedule.day_matches(day.year, day.month, day.day):
            for hour in hours:
                for minute in minutes:
                    fire = day.replace(hour=hour, minute=minute)
                    if fire > now:
                        continue
                    return fire if fire > after else None
        day -= timedelta(days=1)
    return None
