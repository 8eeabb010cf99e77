"""The trading day as the book of record sees it (ARCHITECTURE rule 12: time is a domain
concept). Days open and close only through events; a restart replays them and resumes."""

from __future__ import annotations

import uuid
from uuid import UUID

from domain.values import ExposureMode

# Trading-day aggregate ids are derived from the date, so the store's unique
# (originator id, version) refuses a second opening of the same date by any writer.
_NAMESPACE = uuid.UUID("6d61726b-6574-4c6f-a720-747261646179")


def day_id(trading_date: str) -> UUID:
    return uuid.uuid5(_NAMESPACE, f"trading-day:{trading_date}")


class TradingDay:
    __slots__ = ("date", "exposure_mode", "gross", "is_open", "last_closed_date",
                 "opened_ns", "scheduled_close_ns", "version")

    def __init__(self) -> None:
        self.date: str | None = None  # the current (or, when closed, the last) trading date
        self.is_open = False
        self.exposure_mode: str = ExposureMode.GROSS
        self.gross = True  # exposure_mode == gross, read on every order
        self.opened_ns: int | None = None
        self.scheduled_close_ns: int | None = None
        self.last_closed_date: str | None = None
        self.version = 0

    def status_text(self) -> str:
        if self.is_open:
            return f"open {self.date}"
        if self.last_closed_date is not None:
            return f"closed since {self.last_closed_date}"
        return "no trading day opened"
