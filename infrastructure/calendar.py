"""The trading calendar from the configuration: time zone, session hours, weekdays, holidays.

The engine asks it when a trading day opens and closes (``commands.engine.TradingCalendar``);
the days themselves are events (ARCHITECTURE rule 12). The default configuration trades every
day around the clock in UTC (a day rolls at midnight), so the demo and tests run at any hour;
a US equities desk configures America/New_York, 09:30-16:00, Monday to Friday and holidays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from commands.engine import Session

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NS = 1_000_000_000


@dataclass(frozen=True)
class ConfiguredCalendar:
    timezone: str
    open: time
    close: time | None  # None: midnight at the end of the day ("24:00")
    weekdays: frozenset[int]  # 0 = Monday
    holidays: frozenset[date]

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # unknown zones fail at start-up, not at the first open
        if self.close is not None and self.close <= self.open:
            raise ValueError("calendar: close must be after open (use 24:00 for midnight)")
        if not self.weekdays:
            raise ValueError("calendar: no trading weekdays")

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _local(self, now_ns: int) -> datetime:
        return datetime.fromtimestamp(now_ns / NS, self._zone())

    def _bounds(self, day: date) -> tuple[int, int]:
        zone = self._zone()
        opens = datetime.combine(day, self.open, zone)
        closes = (datetime.combine(day + timedelta(days=1), time(0), zone) if self.close is None
                  else datetime.combine(day, self.close, zone))
        return _ns(opens), _ns(closes)

    def is_trading_date(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def trading_date(self, now_ns: int) -> str:
        return self._local(now_ns).date().isoformat()

    def session_at(self, now_ns: int) -> Session | None:
        day = self._local(now_ns).date()
        if not self.is_trading_date(day):
            return None
        opens, closes = self._bounds(day)
        if opens <= now_ns < closes:
            return Session(day.isoformat(), opens, closes)
        return None

    def close_of(self, trading_date: str) -> int | None:
        return self._bounds(date.fromisoformat(trading_date))[1]


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def parse_calendar(spec: dict[str, object]) -> ConfiguredCalendar:
    """``[calendar]`` of the configuration file; strict, naming the offending key."""
    allowed = {"timezone", "open", "close", "weekdays", "holidays"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"calendar: unknown key(s) {', '.join(unknown)}")

    def clock(key: str, default: str) -> time | None:
        text = spec.get(key, default)
        if not isinstance(text, str):
            raise ValueError(f"calendar.{key}: write a time as \"HH:MM\"")
        if text == "24:00":
            return None
        try:
            return time.fromisoformat(text)
        except ValueError:
            raise ValueError(f"calendar.{key}: {text!r} is not a time HH:MM") from None

    weekdays = spec.get("weekdays", list(WEEKDAYS))
    if not isinstance(weekdays, list) or any(d not in WEEKDAYS for d in weekdays):
        raise ValueError(f"calendar.weekdays: a list of {', '.join(WEEKDAYS)}")
    holidays = spec.get("holidays", [])
    if not isinstance(holidays, list):
        raise ValueError("calendar.holidays: a list of dates")
    try:
        days = frozenset(d if isinstance(d, date) else date.fromisoformat(str(d))
                         for d in holidays)
    except ValueError as exc:
        raise ValueError(f"calendar.holidays: {exc}") from None
    timezone = spec.get("timezone", "UTC")
    if not isinstance(timezone, str):
        raise ValueError("calendar.timezone: an IANA zone name, e.g. \"America/New_York\"")
    opens = clock("open", "00:00")
    if opens is None:
        raise ValueError("calendar.open: 24:00 is not an opening time")
    try:
        return ConfiguredCalendar(timezone, opens, clock("close", "24:00"),
                                  frozenset(WEEKDAYS.index(d) for d in weekdays), days)
    except Exception as exc:  # ZoneInfoNotFoundError and our own checks
        if str(exc).startswith("calendar"):
            raise
        raise ValueError(f"calendar.timezone: {exc}") from None
