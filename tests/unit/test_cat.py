"""FINRA CAT order events (projections/cat.py) on hand-built audit-trail rows: the mapping of
each marketlog event to its CAT record, the JSON Schemas refusing malformed records, Eastern
time across DST with the nanoseconds kept, and deterministic files. No I/O."""

from __future__ import annotations

import bz2
import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from projections.cat import (
    CatError,
    Firm,
    Row,
    build_files,
    cat_timestamp,
    map_rows,
    record_line,
    schema_errors,
    validate_line,
)

FIRM = Firm("MKTL", "A", {"ACC-GAMMA": "P"}, {"ACC-DELTA": "BRKD"})
DAY = date(2026, 3, 9)  # the Monday after the 2026 spring-forward (EDT, UTC-4)
ORDER = "5f0c2a8e-1111-4c8b-9a51-0a1b2c3d4e5f"


def ns(moment: datetime, nanos: int = 0) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + nanos


T0 = ns(datetime(2026, 3, 9, 14, 30, 0, tzinfo=UTC), 123_456_789)  # 10:30 EDT


def accepted(position: int = 10, *, account: str = "ACC-ALPHA", side: str = "buy",
             quantity: int = 100, price: str | None = "190.25", order_type: str = "limit",
             tif: str = "day", order_id: str = ORDER, ts: int = T0) -> Row:
    return Row(position, "OrderAccepted", order_id, ts, "maria", "api", {
        "order_id": order_id, "account_id": account, "symbol": "AAPL", "side": side,
        "quantity": quantity, "order_type": order_type, "limit_price": price,
        "time_in_force": tif, "client_order_id": "c-1", "trading_date": DAY.isoformat()})


def filled(position: int, qty: int, cum: int, leaves: int, price: str = "190.25",
           side: str = "buy", order_id: str = ORDER) -> Row:
    return Row(position, "OrderFilled", order_id, T0 + position, "venue", "venue", {
        "symbol": "AAPL", "side": side, "trade_id": f"T{position}", "fill_quantity": qty,
        "fill_price": price, "cumulative_quantity": cum, "leaves_quantity": leaves})


def replaced(position: int, quantity: int, price: str | None) -> Row:
    return Row(position, "OrderReplaced", ORDER, T0 + position, "venue", "venue", {
        "symbol": "AAPL", "old_quantity": 100, "old_limit_price": "190.25",
        "quantity": quantity, "limit_price": price})


def canceled(position: int, qty: int, reason: str) -> Row:
    return Row(position, "OrderCanceled", ORDER, T0 + position, "venue", "venue", {
        "symbol": "AAPL", "canceled_quantity": qty, "reason": reason})


def records(*rows: Row, in_day: set[int] | None = None) -> list[dict[str, Any]]:
    out = list(map_rows(rows, in_day, FIRM, DAY))
    for record in out:  # every mapped record passes its schema, as written
        assert schema_errors(orjson.loads(record_line(record))) == [], record
    return out


# ------------------------------------------------------------------------- mapping


def test_an_accepted_customer_order_is_a_new_order_meno() -> None:
    [meno] = records(accepted())
    assert meno == {
        "actionType": "NEW", "firmROEID": "20260309_10", "type": "MENO",
        "CATReporterIMID": "MKTL", "orderKeyDate": "20260309 103000.123456789",
        "orderID": ORDER, "symbol": "AAPL", "eventTimestamp": "20260309 103000.123456789",
        "manualFlag": False, "electronicDupFlag": False, "deptType": "A", "side": "B",
        "price": Decimal("190.25"), "quantity": 100, "orderType": "LMT",
        "timeInForce": {"DAY": 20260309}, "tradingSession": "REG", "handlingInstructions": "",
        "firmDesignatedID": "ACC-ALPHA", "accountHolderType": "A", "representativeInd": "N",
    }  # fmt: skip
    # Key order is fixed, prices are exact JSON numbers (never through a float).
    assert record_line(meno).startswith(b'{"actionType":"NEW","firmROEID":"20260309_10",')
    assert b'"price":190.25,' in record_line(meno)


@pytest.mark.parametrize(("side", "code"), [("buy", "B"), ("sell", "SL"), ("sell_short", "SS")])
def test_sides_take_cat_codes(side: str, code: str) -> None:
    assert records(accepted(side=side))[0]["side"] == code


@pytest.mark.parametrize(("tif", "expected", "min_qty"), [
    ("day", {"DAY": 20260309}, None), ("gtc", {"GTC": True}, None),
    ("ioc", {"IOC": True}, None), ("fok", {"IOC": True}, 100)])
def test_time_in_force(tif: str, expected: dict[str, Any], min_qty: int | None) -> None:
    [meno] = records(accepted(tif=tif))
    assert meno["timeInForce"] == expected
    assert meno.get("minQty") == min_qty  # FOK: all of it at once, or nothing


def test_a_market_order_has_no_price() -> None:
    [meno] = records(accepted(order_type="market", price=None))
    assert meno["orderType"] == "MKT" and "price" not in meno


def test_account_holder_type_comes_from_the_configuration() -> None:
    assert records(accepted(account="ACC-GAMMA"))[0]["accountHolderType"] == "P"
    assert records(accepted(account="ACC-BETA"))[0]["accountHolderType"] == "A"


def test_an_order_from_another_cat_reporter_is_an_order_accepted_meoa() -> None:
    [meoa] = records(accepted(account="ACC-DELTA"))
    assert meoa["type"] == "MEOA"
    assert (meoa["senderIMID"], meoa["senderType"], meoa["routedOrderID"]) == (
        "BRKD", "F", "c-1")
    assert "firmDesignatedID" not in meoa


def test_a_partial_fill_then_cancel_reports_the_trade_and_what_was_left() -> None:
    _, meot, meoc = records(accepted(), filled(11, 40, 40, 60, "190.20"),
                            canceled(12, 60, "requested"))
    assert (meot["type"], meot["tradeID"], meot["quantity"], meot["price"], meot["side"],
            meot["leavesQty"]) == ("MEOT", "T11", 40, Decimal("190.20"), "B", 60)
    assert (meoc["type"], meoc["cancelQty"], meoc["leavesQty"], meoc["initiator"]) == (
        "MEOC", 60, 0, "C")
    # Every record of the order carries the same key: the acceptance time and the id.
    assert meot["orderKeyDate"] == meoc["orderKeyDate"] == "20260309 103000.123456789"
    assert meot["eventTimestamp"] == "20260309 103000.123456800"  # T0 + 11 ns


@pytest.mark.parametrize(("reason", "initiator"), [
    ("requested", "C"), ("end_of_day", "F"), ("kill_switch", "F"), ("ioc_remainder", "F"),
    ("self_trade_prevented", "F"), ("market_no_liquidity", "F")])
def test_who_initiated_a_cancel(reason: str, initiator: str) -> None:
    assert records(accepted(), canceled(11, 100, reason))[1]["initiator"] == initiator


def test_a_replace_is_modified_with_the_new_terms_and_leaves_net_of_fills() -> None:
    _, _, meom = records(accepted(), filled(11, 30, 30, 70), replaced(12, 80, "189.50"))
    assert (meom["type"], meom["quantity"], meom["price"], meom["leavesQty"],
            meom["initiator"], meom["side"], meom["orderType"]) == (
        "MEOM", 80, Decimal("189.50"), 50, "C", "B", "LMT")


def test_a_gtc_order_from_an_earlier_day_keeps_its_key_and_state() -> None:
    earlier = T0 - 86_400 * 1_000_000_000
    rows = (accepted(3, tif="gtc", ts=earlier), filled(4, 25, 25, 75),
            replaced(5, 90, "190.00"), canceled(20, 65, "end_of_day"))
    [meoc] = records(*rows, in_day={20})  # only the cancel is on this day
    assert meoc["orderKeyDate"] == "20260308 103000.123456789"
    assert (meoc["cancelQty"], meoc["firmROEID"]) == (65, "20260309_20")


def test_an_event_of_an_order_never_accepted_is_refused() -> None:
    with pytest.raises(CatError, match="OrderAccepted is not in the read models"):
        records(filled(4, 25, 25, 75))


# ------------------------------------------------------------------------- time


@pytest.mark.parametrize(("utc", "nanos", "eastern"), [
    # 2026-03-08: clocks go forward at 02:00 EST (07:00 UTC) to 03:00 EDT.
    (datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC), 999_999_999, "20260308 015959.999999999"),
    (datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC), 1, "20260308 030000.000000001"),
    # 2026-11-01: clocks go back at 02:00 EDT (06:00 UTC) to 01:00 EST: 01:30 happens twice.
    (datetime(2026, 11, 1, 5, 30, 0, tzinfo=UTC), 5, "20261101 013000.000000005"),
    (datetime(2026, 11, 1, 6, 30, 0, tzinfo=UTC), 5, "20261101 013000.000000005"),
    # Winter (UTC-5) and a UTC date that is still the previous day in New York.
    (datetime(2026, 1, 15, 21, 0, 0, tzinfo=UTC), 120_000_450, "20260115 160000.120000450"),
    (datetime(2026, 7, 1, 2, 0, 0, tzinfo=UTC), 0, "20260630 220000.000000000"),
])
def test_eastern_time_across_dst_with_nanoseconds(utc: datetime, nanos: int,
                                                   eastern: str) -> None:
    assert cat_timestamp(ns(utc, nanos)) == eastern


# ------------------------------------------------------------------------- schemas


def valid_meno() -> dict[str, Any]:
    return orjson.loads(record_line(records(accepted())[0]))  # type: ignore[no-any-return]


@pytest.mark.parametrize("missing", ["firmROEID", "orderKeyDate", "side", "quantity",
                                     "timeInForce", "accountHolderType", "price"])
def test_a_record_missing_a_required_field_is_refused(missing: str) -> None:
    record = valid_meno()
    del record[missing]  # price: required of a limit order
    errors = schema_errors(record)
    assert errors and any(missing in e for e in errors), errors


@pytest.mark.parametrize(("name", "value"), [
    ("side", "S"), ("orderType", "STOP"), ("actionType", "COR"), ("accountHolderType", "Z"),
    ("tradingSession", "NIGHT"), ("quantity", 0), ("quantity", "100"), ("price", -1),
    ("eventTimestamp", "2026-03-09T10:30:00Z"), ("eventTimestamp", "20260309 103000.123"),
    ("timeInForce", {"DAY": 20260309, "GTC": True}), ("timeInForce", {"FOK": True}),
    ("firmROEID", "ROE-1"), ("manualFlag", "false"), ("CATReporterIMID", "mktl"),
    ("unexpected", 1)])
def test_a_record_with_a_wrong_value_is_refused(name: str, value: Any) -> None:
    record = valid_meno()
    record[name] = value
    assert schema_errors(record), (name, value)


def test_a_market_order_with_a_price_is_refused() -> None:
    record = valid_meno()
    record["orderType"] = "MKT"
    assert schema_errors(record)


def test_an_unknown_type_is_refused() -> None:
    record = valid_meno()
    record["type"] = "MEOR"  # routes: marketlog does not route
    assert schema_errors(record) == ["type 'MEOR' is not one of MENO, MEOA, MEOM, MEOC, MEOT"]


def test_each_record_type_checks_its_own_fields() -> None:
    [_, meoc] = records(accepted(), canceled(11, 100, "requested"))
    line = orjson.loads(record_line(meoc))
    del line["cancelQty"]
    assert any("cancelQty" in e for e in schema_errors(line))
    meoc2 = orjson.loads(record_line(meoc))
    meoc2["initiator"] = "X"
    assert schema_errors(meoc2)


def test_generation_stops_at_a_record_that_fails_naming_it() -> None:
    bad = {**records(accepted())[0], "side": "BUY"}
    with pytest.raises(CatError, match=r"20260309_10 \(MENO\) fails its schema: side"):
        build_files([bad], FIRM, DAY)
    with pytest.raises(CatError):
        validate_line(record_line({**bad, "side": "B", "quantity": -5}))


# ------------------------------------------------------------------------- files


def test_files_are_deterministic_and_described_by_their_metadata() -> None:
    rows = (accepted(), filled(11, 40, 40, 60), canceled(12, 60, "end_of_day"))
    first = build_files(map_rows(rows, None, FIRM, DAY), FIRM, DAY)
    second = build_files(map_rows(rows, None, FIRM, DAY), FIRM, DAY)
    assert (first.data, first.meta) == (second.data, second.meta)
    assert first.data_name == "MKTL_20260309_OrderEvents_000001.json.bz2"
    assert first.meta_name == "MKTL_20260309_OrderEvents_000001.meta.json"
    lines = bz2.decompress(first.data).splitlines()
    assert [orjson.loads(line)["type"] for line in lines] == ["MENO", "MEOT", "MEOC"]
    meta = orjson.loads(first.meta)
    assert meta["compressedHash"] == hashlib.sha256(first.data).hexdigest() == first.sha256
    assert (meta["recordCount"], meta["recordCounts"]) == (3, {
        "MENO": 1, "MEOA": 0, "MEOM": 0, "MEOC": 1, "MEOT": 1})
    assert schema_errors(meta, "metadata") == []


@pytest.mark.parametrize("day", [date(209, 1, 1), date(1, 1, 1), date(9999, 12, 31)])
def test_dates_are_always_eight_digits(day: date) -> None:
    meta = orjson.loads(build_files([], FIRM, day).meta)  # an empty day of any date
    assert meta["tradingDate"] == f"{day.year:04d}{day.month:02d}{day.day:02d}"
    assert schema_errors(meta, "metadata") == []


def test_an_empty_day_is_a_valid_empty_file() -> None:
    files = build_files([], FIRM, DAY)
    assert bz2.decompress(files.data) == b""
    meta = orjson.loads(files.meta)
    assert meta["recordCount"] == 0 and schema_errors(meta, "metadata") == []
