"""FINRA CAT order event files for a trading day, built from the read models only.

The source is the ``audit_trail`` projection (every event in log order with its stored
body), never the journal: a replay of the log into fresh read models gives the same rows,
so it gives the same bytes here. The output is what CAT takes from an Industry Member:
newline-delimited JSON, bzip2-compressed, plus a metadata file with the record count and
the SHA-256 of the compressed file. Every record is validated against the JSON Schema of
its type (projections/cat_schemas/) before anything is written.

Mapping (README "FINRA CAT order events" has the table and the reasons):

* ``OrderAccepted`` -> MENO (New Order), or MEOA (Order Accepted) when the account is
  another CAT Reporter (config ``[cat] senders``): CAT reports an order received from a
  broker-dealer as accepted, a customer's as new.
* ``OrderReplaced`` -> MEOM (Order Modified): the new terms in force (a refused replace
  never modified anything).
* ``OrderCanceled`` -> MEOC (Order Cancelled): requested, expired at the close, kill switch,
  IOC/FOK/market remainders, self-trade prevention.
* ``OrderFilled`` -> MEOT (Trade): marketlog's venue executes the order.
* ``OrderRejected`` -> nothing: refused on receipt by a pre-trade control, never accepted
  nor represented anywhere (it stays in the audit trail and the 15c3-5 report).

Which events belong to a trading day: those from each ``TradingDayOpened`` of that
``trading_date`` up to the next ``TradingDayOpened`` in log order, so the close's expiry
cancels (confirmed by the venue just after ``TradingDayClosed``) are on the day they expire.
"""

from __future__ import annotations

import bz2
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa

from projections.tables import audit_trail

# CAT reports every time in US Eastern time (CAT IM Technical Specifications, timestamps).
EASTERN = ZoneInfo("America/New_York")
NS_PER_S = 1_000_000_000

RECORD_TYPES = ("MENO", "MEOA", "MEOM", "MEOC", "MEOT")
SCHEMA_FILES = (*RECORD_TYPES, "metadata")
SOURCE_EVENTS = ("OrderAccepted", "OrderReplaced", "OrderCanceled", "OrderFilled")

# CAT side codes: B buy, SL sell long, SS sell short (SX, short exempt, is never marked by
# marketlog: no Rule 201 exemption is recorded on an order).
SIDES = {"buy": "B", "sell": "SL", "sell_short": "SS"}
ORDER_TYPES = {"limit": "LMT", "market": "MKT"}
# Cancel reasons whose cancel the customer asked for; every other reason is the firm's
# (its venue pulled the order: the close, a kill switch, a remainder, self-trade prevention).
CUSTOMER_CANCELS = frozenset({"requested"})
# The configured calendar's session is the session the order may trade in.
TRADING_SESSION = "REG"
CHUNK = 1000


class CatError(ValueError):
    """A record failed its schema, or the read models cannot give a consistent day."""


def cat_timestamp(ts_ns: int) -> str:
    """UTC epoch nanoseconds -> CAT's "YYYYMMDD HHMMSS.CCCNNNNNN" in US Eastern time.

    Eastern through zoneinfo (EST/EDT by the instant); the nanoseconds are carried apart
    because datetime holds microseconds only (CAT: "record nanoseconds if you have them")."""
    seconds, nanos = divmod(ts_ns, NS_PER_S)
    return f"{_eastern_second(seconds)}.{nanos:09d}"


@lru_cache(maxsize=4096)
def _eastern_second(seconds: int) -> str:
    # A day's events fall in far fewer seconds than there are events.
    return f"{datetime.fromtimestamp(seconds, UTC).astimezone(EASTERN):%Y%m%d %H%M%S}"


def compact_date(trading_date: date) -> str:
    # Not strftime: %Y does not zero-pad years before 1000 on every platform (0209 -> "209").
    return f"{trading_date.year:04d}{trading_date.month:02d}{trading_date.day:02d}"


@dataclass(frozen=True)
class Firm:
    """The reporting identity: CATReporterIMID, accountHolderType per account, and the
    accounts that are other CAT Reporters (IMID of the sender)."""

    imid: str
    holder_type: str = "A"
    holder_types: Mapping[str, str] = field(default_factory=dict)
    senders: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, cat: Any) -> Firm:  # infrastructure.config.CatConfig
        return cls(cat.imid, cat.account_holder_type, dict(cat.account_holder_types),
                   dict(cat.senders))


@dataclass(frozen=True)
class Row:
    """One audit-trail row the mapping needs."""

    position: int
    event_type: str
    order_id: str
    ts_ns: int
    actor: str
    source: str
    payload: Mapping[str, Any]


@dataclass
class _Order:
    accepted: Row
    quantity: int
    price: str | None
    filled: int = 0


# ------------------------------------------------------------------------- mapping


def _price(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time_in_force(tif: str, trading_date: str) -> dict[str, Any]:
    # CAT timeInForce is a name/value pair: DAY carries its date (YYYYMMDD); FOK is an IOC
    # with a minimum quantity of the whole order (minQty, added by the caller).
    if tif == "day":
        return {"DAY": int(compact_date(date.fromisoformat(trading_date)))}
    if tif == "gtc":
        return {"GTC": True}
    return {"IOC": True}


def _common(kind: str, row: Row, firm: Firm, order: _Order, day: str) -> dict[str, Any]:
    accepted = order.accepted
    return {
        "actionType": "NEW",
        # Unique per record for the event date and IMID, and deterministic: the log position.
        "firmROEID": f"{day}_{row.position}",
        "type": kind,
        "CATReporterIMID": firm.imid,
        # The time the orderID was assigned: the acceptance (an order keeps its id when
        # replaced, so the key never changes).
        "orderKeyDate": cat_timestamp(accepted.ts_ns),
        "orderID": accepted.order_id,
        "symbol": accepted.payload["symbol"],
        "eventTimestamp": cat_timestamp(row.ts_ns),
        "manualFlag": False,  # every marketlog event is electronic
        "electronicDupFlag": False,
    }


def _order_terms(order: _Order) -> dict[str, Any]:
    p = order.accepted.payload
    terms: dict[str, Any] = {"side": SIDES[p["side"]]}
    if order.price is not None:  # a market order has no price (CAT: blank for MKT)
        terms["price"] = Decimal(order.price)
    terms["quantity"] = order.quantity
    if p["time_in_force"] == "fok":
        terms["minQty"] = order.quantity
    terms["orderType"] = ORDER_TYPES[p["order_type"]]
    terms["timeInForce"] = _time_in_force(p["time_in_force"], p["trading_date"])
    terms["tradingSession"] = TRADING_SESSION
    terms["handlingInstructions"] = ""  # none: no special handling is offered
    return terms


def map_event(row: Row, order: _Order, firm: Firm, day: str) -> dict[str, Any]:
    """The CAT record of one in-day event of ``order`` (whose state is before ``row``)."""
    p = row.payload
    if row.event_type == "OrderAccepted":
        account = p["account_id"]
        sender = firm.senders.get(account)
        kind = "MEOA" if sender else "MENO"
        record = _common(kind, row, firm, order, day)
        record["deptType"] = "A"  # agency: the firm handles its accounts' orders
        record.update(_order_terms(order))
        if sender:
            # Received from another CAT Reporter: who sent it and under which id.
            record["senderIMID"] = sender
            record["senderType"] = "F"
            record["routedOrderID"] = p["client_order_id"]
            record["affiliateFlag"] = False
        else:
            record["firmDesignatedID"] = account
        record["accountHolderType"] = firm.holder_types.get(account, firm.holder_type)
        record["representativeInd"] = "N"
        return record
    if row.event_type == "OrderReplaced":
        order.quantity = int(p["quantity"])
        order.price = None if p["limit_price"] is None else str(p["limit_price"])
        record = _common("MEOM", row, firm, order, day)
        record.update(_order_terms(order))
        record["leavesQty"] = order.quantity - order.filled
        record["initiator"] = "C"  # replaces are requested by the trader for the customer
        return record
    if row.event_type == "OrderCanceled":
        record = _common("MEOC", row, firm, order, day)
        record["cancelQty"] = int(p["canceled_quantity"])
        record["leavesQty"] = 0  # the venue pulls the whole remainder
        record["initiator"] = "C" if p["reason"] in CUSTOMER_CANCELS else "F"
        return record
    if row.event_type == "OrderFilled":
        order.filled = int(p["cumulative_quantity"])
        record = _common("MEOT", row, firm, order, day)
        record["tradeID"] = p["trade_id"]
        record["side"] = SIDES[p["side"]]
        record["quantity"] = int(p["fill_quantity"])
        record["price"] = _price(p["fill_price"])
        record["leavesQty"] = int(p["leaves_quantity"])
        return record
    raise CatError(f"position {row.position}: {row.event_type} has no CAT event")


def _track(row: Row, order: _Order) -> None:
    """Apply an event outside the day to the order's state (earlier days of a GTC order)."""
    p = row.payload
    if row.event_type == "OrderReplaced":
        order.quantity = int(p["quantity"])
        order.price = None if p["limit_price"] is None else str(p["limit_price"])
    elif row.event_type == "OrderFilled":
        order.filled = int(p["cumulative_quantity"])


def map_rows(rows: Iterable[Row], in_day: set[int] | None, firm: Firm,
             trading_date: date) -> Iterator[dict[str, Any]]:
    """CAT records, in log order, of the rows (sorted by position) whose position is in
    ``in_day`` (None: all of them); the others only bring each order's state up to date."""
    day = compact_date(trading_date)
    orders: dict[str, _Order] = {}
    for row in rows:
        if row.event_type == "OrderAccepted":
            p = row.payload
            orders[row.order_id] = _Order(row, int(p["quantity"]),
                                          None if p["limit_price"] is None
                                          else str(p["limit_price"]))
        order = orders.get(row.order_id)
        if order is None:
            raise CatError(f"position {row.position}: {row.event_type} of order {row.order_id} "
                           "whose OrderAccepted is not in the read models")
        if in_day is None or row.position in in_day:
            yield map_event(row, order, firm, day)
        else:
            _track(row, order)


# ------------------------------------------------------------------- serialisation


def _number(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        # A JSON number written from the exact decimal text, never through a float.
        text = format(value.normalize(), "f")
        return orjson.Fragment(text.rstrip("0").rstrip(".") if "." in text else text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def record_line(record: Mapping[str, Any]) -> bytes:
    """One record as a JSON line, keys in the mapping's (fixed) order."""
    return orjson.dumps(record, default=_number, option=orjson.OPT_APPEND_NEWLINE)


# ------------------------------------------------------------------------- schemas


@cache
def schema(name: str) -> dict[str, Any]:
    text = resources.files("projections").joinpath(f"cat_schemas/{name}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(name: str) -> Any:
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(schema(name))


def schema_errors(record: Mapping[str, Any], name: str | None = None) -> list[str]:
    """Why ``record`` (parsed JSON) fails the schema of its type (or ``name``); [] if valid."""
    kind = name or record.get("type")
    if kind not in SCHEMA_FILES:
        return [f"type {kind!r} is not one of {', '.join(RECORD_TYPES)}"]
    validator = _validator(kind)
    if validator.is_valid(record):
        return []
    return [f"{'/'.join(map(str, e.instance_path)) or '(record)'}: {e.message}"
            for e in validator.iter_errors(dict(record))]


def validate_line(line: bytes) -> None:
    record = orjson.loads(line)
    errors = schema_errors(record)
    if errors:
        raise CatError(f"CAT record {record.get('firmROEID', '?')} ({record.get('type')}) "
                       f"fails its schema: {'; '.join(errors)}")


# ------------------------------------------------------------------------- reading


def day_segments(conn: sa.Connection, trading_date: date) -> list[tuple[int, int | None]]:
    """[start, end) log positions of the day: each TradingDayOpened of that date up to the
    next TradingDayOpened (None: up to now)."""
    a = audit_trail.c
    opens = conn.execute(sa.select(a.position, a.payload)
                         .where(a.event_type == "TradingDayOpened")
                         .order_by(a.position)).all()
    wanted = trading_date.isoformat()
    segments: list[tuple[int, int | None]] = []
    for i, (position, payload) in enumerate(opens):
        if orjson.loads(payload)["trading_date"] == wanted:
            end = opens[i + 1][0] if i + 1 < len(opens) else None
            segments.append((position, end))
    return segments


def _rows(conn: sa.Connection, stmt: sa.Select[Any]) -> list[Row]:
    loads = orjson.loads
    return [Row(r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]))
            for r in conn.execute(stmt).tuples()]


def _columns() -> Sequence[Any]:
    a = audit_trail.c
    return (a.position, a.event_type, a.order_id, a.ts_ns, a.actor, a.source, a.payload)


def read_day(conn: sa.Connection, trading_date: date) -> tuple[list[Row], set[int]]:
    """The order events of the day and, for orders that began on an earlier day (GTC), their
    earlier events: all sorted by position; with the positions that are in the day."""
    a = audit_trail.c
    day_rows: list[Row] = []
    segments = day_segments(conn, trading_date)
    for start, end in segments:
        stmt = (sa.select(*_columns()).where(a.event_type.in_(SOURCE_EVENTS))
                .where(a.position >= start).order_by(a.position))
        if end is not None:
            stmt = stmt.where(a.position < end)
        day_rows.extend(_rows(conn, stmt))
    in_day = {r.position for r in day_rows}
    started = {r.order_id for r in day_rows if r.event_type == "OrderAccepted"}
    carried = sorted({r.order_id for r in day_rows} - started)
    history: list[Row] = []
    if carried:
        first = segments[0][0]
        for i in range(0, len(carried), CHUNK):
            stmt = (sa.select(*_columns()).where(a.event_type.in_(SOURCE_EVENTS))
                    .where(a.order_id.in_(carried[i:i + CHUNK]))
                    .where(a.position < first))
            history.extend(_rows(conn, stmt))
    rows = sorted([*history, *day_rows], key=lambda r: r.position)
    return rows, in_day


# ------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class CatFiles:
    trading_date: date
    data_name: str
    data: bytes  # the .json.bz2 bytes
    meta_name: str
    meta: bytes  # the .meta.json bytes
    counts: dict[str, int]
    sha256: str

    @property
    def records(self) -> int:
        return sum(self.counts.values())


def file_names(imid: str, trading_date: date) -> tuple[str, str]:
    stem = f"{imid}_{compact_date(trading_date)}_OrderEvents_000001"
    return f"{stem}.json.bz2", f"{stem}.meta.json"


def build_files(records: Iterable[Mapping[str, Any]], firm: Firm,
                trading_date: date) -> CatFiles:
    """Validate every record, then compress and describe them. Deterministic: the same
    records give the same bytes (fixed key order, no generation time, bz2 level 9)."""
    lines = []
    counts: Counter[str] = Counter()
    for record in records:
        line = record_line(record)
        validate_line(line)
        lines.append(line)
        counts[record["type"]] += 1
    data = bz2.compress(b"".join(lines), 9)
    sha256 = hashlib.sha256(data).hexdigest()
    data_name, meta_name = file_names(firm.imid, trading_date)
    per_type = {kind: counts.get(kind, 0) for kind in RECORD_TYPES}
    metadata = {
        "type": "MD",
        "CATReporterIMID": firm.imid,
        "tradingDate": compact_date(trading_date),
        "fileName": data_name,
        "recordCount": sum(per_type.values()),
        "recordCounts": per_type,
        "compressedHash": sha256,
        "hashAlgorithm": "SHA-256",
        "compressedSize": len(data),
    }
    errors = schema_errors(metadata, "metadata")
    if errors:
        raise CatError(f"metadata of {data_name} fails its schema: {'; '.join(errors)}")
    meta = orjson.dumps(metadata, option=orjson.OPT_INDENT_2) + b"\n"
    return CatFiles(trading_date, data_name, data, meta_name, meta, per_type, sha256)


def generate(conn: sa.Connection, firm: Firm, trading_date: date) -> CatFiles:
    """The day's CAT order event files from the read models on ``conn``."""
    rows, in_day = read_day(conn, trading_date)
    return build_files(map_rows(rows, in_day, firm, trading_date), firm, trading_date)
