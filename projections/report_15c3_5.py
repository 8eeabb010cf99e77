"""The daily SEC Rule 15c3-5 report, assembled from the control statistics read models.

A pure read of projections/controls_stats.py's tables (and the audit trail's chain head):
nothing here scans the journal. The result is a plain dict in a fixed key order, with every
decimal as text (``price_text``) and every time as ISO 8601 UTC with nanoseconds, so two
read-model databases built from the same log give byte-identical reports, whichever feed
and database built them. ``sha256`` is the SHA-256 of the canonical JSON of the report
without its ``sha256`` member (see ``canonical_bytes``); the HTML and PDF quote it.

The nine items follow /work/shared/COMPLIANCE.md, "The daily 15c3-5 report".
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from domain.clock_watch import CAT_TOLERANCE_NS, Where
from domain.controls import NEW_ORDER_CONTROLS
from domain.values import ExposureMode, price_text
from projections.controls_stats import BUCKET_NS, FIRM
from projections.tables import (
    audit_trail,
    control_coverage,
    control_day_accounts,
    control_days,
    control_exposure_buckets,
    control_governance,
    control_rejections,
)

REPORT = "15c3-5"
# 2: item 8 lists the recorded clock exceptions (it was a statement that none were recorded).
SCHEMA = 2
CHART_ACCOUNTS = 5  # intraday series in the report: the firm and the accounts used most
CALIBRATION_SLACK = 10  # a limit this many times the peak use is "far above use"
_PCT = Decimal("0.01")

LIMIT_EVENTS = ("LimitChangeRequested", "LimitChangeApproved", "LimitChangeRejected",
                "LimitChangeReverted")
KILL_EVENTS = ("KillSwitchTripped", "KillSwitchReset")
ENTITLEMENT_EVENTS = ("EntitlementGranted", "EntitlementRevoked", "UserCreated",
                      "UserDisabled", "AccountSuspended", "AccountReinstated")

DEFINITIONS = {
    "exposure": "15c3-5(c)(1)(i): notional of orders entered today, open leaves at their "
                "exposure price (limit, or a market order's protection price) plus fills.",
    "peak": "the highest exposure with an order, sampled at every acceptance and replace "
            "request (exposure before, as the decision recorded it, plus what the order adds; "
            "gross). Firm-wide from each decision's recorded firm exposure.",
    "end_of_day": "exposure of the orders entered that day after the day's last event "
                  "(fills plus orders still open after the close's cancels), in the day's "
                  "exposure mode. Orders carried over (GTC) count on the day they were "
                  "entered.",
    "breaches": "account: acceptances or replace requests leaving exposure above the credit "
                "limit the decision recorded (possible only for orders that reduce exposure "
                "after a limit was lowered); firm: five-minute intervals whose peak exceeded "
                "the firm limit in force.",
    "fill_delay": "OrderFilled records one time (ts_ns, when the venue step reported the "
                  "execution; the simulated venue executes inside that step, so execution "
                  "and record time are one instant). The delay reported is from the decision "
                  "that sent the order to the venue (its acceptance, or its confirmed "
                  "replace) to the record of a fill that executed on arrival (taker). A "
                  "resting order's (maker) fill has no earlier execution time to compare.",
    "coverage": "per control, the orders it applied to (accepted: every new-order control; "
                "rejected by control k: the controls before k in table order, and k; a "
                "market order skips tick_size, an order with no reference price skips "
                "stale_reference) and the orders whose decision event records it ran.",
}
OVERRIDES = {"recorded": False,
             "statement": "no such event type exists: marketlog has no soft blocks (every "
                          "control is a hard block), so there is nothing to override"}
CLOCK_EXCEPTION = "ClockExceptionRecorded"
REFERENCE_WHERE = str(Where.REFERENCE)
CLOCK_STEPS = ("backward steps of the system clock beyond the engine's tolerance (at most "
               "CAT's 50 ms) are detected and recorded, at a restart against the log's "
               "last event and during trading once per cycle, each episode with its end "
               "(caught_up)")
CLOCK_STATEMENT = (CLOCK_STEPS + "; drift against NIST time is not measured (no time "
                   "reference configured)")


class NoTradingDay(LookupError):
    """The log holds no trading day for the date asked."""


def iso_ns(ns: int | None) -> str | None:
    """ISO 8601 UTC with all nine digits of the nanoseconds the log keeps."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"


def _pct(value: Decimal | None, limit: Decimal | None) -> str | None:
    if value is None or not limit:
        return None
    return price_text((value * 100 / limit).quantize(_PCT))


def _text(value: Decimal | None) -> str | None:
    return price_text(value)


def canonical_bytes(report: dict[str, Any]) -> bytes:
    """The bytes the report's SHA-256 is taken over: its JSON without ``sha256``, keys sorted,
    no whitespace (orjson), every decimal already text."""
    body = {k: v for k, v in report.items() if k != "sha256"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sealed(report: dict[str, Any]) -> dict[str, Any]:
    report["sha256"] = hashlib.sha256(canonical_bytes(report)).hexdigest()
    return report


# ------------------------------------------------------------------------ the day


def daily_report(conn: sa.Connection, trading_date: str,
                 configured_firm_limit: Decimal | None = None) -> dict[str, Any]:
    """The report for one trading day, sealed with its SHA-256.

    ``configured_firm_limit``: the firm credit limit the configuration seeds, used only when
    no limit change in the log says which value was in force (the log records the firm's
    limit only through its changes)."""
    return sealed(_day_body(conn, trading_date, configured_firm_limit))


def range_report(conn: sa.Connection, first: str, last: str,
                 configured_firm_limit: Decimal | None = None) -> dict[str, Any]:
    """Every trading day from ``first`` to ``last`` (inclusive) with totals, sealed."""
    dates = [d for (d,) in conn.execute(
        sa.select(control_days.c.trading_date)
        .where(control_days.c.trading_date.between(first, last),
               control_days.c.opened_ns.is_not(None))
        .order_by(control_days.c.trading_date))]
    days = [_day_body(conn, d, configured_firm_limit) for d in dates]
    for day in days:
        sealed(day)
    totals = {
        "trading_days": len(days),
        "orders": sum(d["orders"]["accepted"] + d["orders"]["rejected"] for d in days),
        "rejections": sum(d["rejections"]["total"] for d in days),
        "account_breaches": sum(a["breaches"] for d in days
                                for a in d["limit_use"]["accounts"]),
        "coverage_complete": all(d["coverage"]["complete"] for d in days),
        "fills_delivered": sum(d["post_trade"]["fills_delivered"] for d in days),
    }
    return sealed({"report": REPORT, "schema": SCHEMA, "from": first, "to": last,
                   "chain_head": days[-1]["chain_head"] if days else None,
                   "totals": totals, "days": days})


def _day_body(conn: sa.Connection, trading_date: str,
              configured_firm_limit: Decimal | None) -> dict[str, Any]:
    day = conn.execute(sa.select(control_days).where(
        control_days.c.trading_date == trading_date)).mappings().first()
    if day is None or day["opened_ns"] is None:
        raise NoTradingDay(f"no trading day {trading_date} in the log")
    next_open = conn.execute(
        sa.select(control_days.c.opened_ns, control_days.c.opened_position)
        .where(control_days.c.trading_date > trading_date,
               control_days.c.opened_ns.is_not(None))
        .order_by(control_days.c.trading_date).limit(1)).first()
    # The day's events run from its open to the next day's open (overnight governance
    # belongs to the day before it).
    until_ns = None if next_open is None else next_open[0]
    until_position = None if next_open is None else next_open[1]
    governance = _governance(conn, day["opened_ns"], until_ns)
    mode = day["exposure_mode"] or ExposureMode.GROSS
    return {
        "report": REPORT,
        "schema": SCHEMA,
        "trading_date": trading_date,
        "trading_day": {
            "opened_at": iso_ns(day["opened_ns"]),
            "closed_at": iso_ns(day["closed_ns"]),
            "status": "closed" if day["closed_ns"] is not None else "open",
            "exposure_mode": mode,
        },
        "chain_head": _chain_head(conn, until_position),
        "orders": {"accepted": day["accepted"], "rejected": day["rejected"]},
        "limit_use": _limit_use(conn, trading_date, mode, governance, configured_firm_limit),
        "rejections": _rejections(conn, trading_date),
        "overrides": OVERRIDES,
        "limit_changes": _limit_changes(governance),
        "kill_switches_and_throttles": _kill_switches(conn, trading_date, governance),
        "entitlement_changes": _entitlements(governance),
        "post_trade": _post_trade(day),
        "clock_exceptions": _clock_exceptions(governance),
        "coverage": _coverage(conn, trading_date),
        "definitions": DEFINITIONS,
    }


def _chain_head(conn: sa.Connection, before_position: int | None) -> dict[str, Any]:
    """The last log position (and its hash) the report covers: the day's last event, i.e.
    the one before the next day's open, or the newest the read models hold."""
    stmt = sa.select(sa.func.max(audit_trail.c.position))
    if before_position is not None:
        stmt = stmt.where(audit_trail.c.position < before_position)
    position = conn.execute(stmt).scalar()
    if position is None:
        return {"position": 0, "hash": None}
    payload = conn.execute(sa.select(audit_trail.c.payload).where(
        audit_trail.c.position == position)).scalar_one()
    return {"position": position, "hash": orjson.loads(payload).get("hash")}


def _governance(conn: sa.Connection, from_ns: int, until_ns: int | None
                ) -> list[dict[str, Any]]:
    t = control_governance
    stmt = sa.select(t.c.position, t.c.event_type, t.c.ts_ns, t.c.actor, t.c.payload).where(
        t.c.ts_ns >= from_ns, t.c.event_type != "ReportCertified")
    if until_ns is not None:
        stmt = stmt.where(t.c.ts_ns < until_ns)
    return [{"position": p, "type": kind, "ts_ns": ts, "actor": actor,
             "body": orjson.loads(payload)}
            for p, kind, ts, actor, payload in conn.execute(stmt.order_by(t.c.position))]


# ------------------------------------------------------------------------ item 1


def _exposure(row: dict[str, Any], mode: str) -> Decimal:
    # domain.accounts.Exposure.value, from the sums by side.
    if mode == ExposureMode.GROSS:
        return Decimal(row["buy_entered"] + row["sell_entered"])
    return Decimal(max(row["buy_entered"] - row["sell_filled"],
                       row["sell_entered"] - row["buy_filled"]))


def firm_limit_at(changes: list[dict[str, Any]], ts_ns: int,
                  configured: Decimal | None) -> tuple[Decimal | None, str]:
    """The firm credit limit in force at ``ts_ns`` and where that value comes from.

    ``changes``: the firm credit-limit approvals and reversions, in log order."""
    before = [c for c in changes if c["ts_ns"] <= ts_ns]
    if before:
        last = before[-1]
        value = last["body"].get("new_value", last["body"].get("value"))
        return Decimal(value), f"{last['type']} at position {last['position']}"
    after = [c for c in changes if c["type"] == "LimitChangeApproved"]
    if after:
        return Decimal(after[0]["body"]["old_value"]), \
            f"old value of LimitChangeApproved at position {after[0]['position']}"
    if configured is None:
        return None, "not recorded in the log"
    return configured, "configuration (no firm limit change recorded in the log)"


def _firm_changes(conn: sa.Connection) -> list[dict[str, Any]]:
    t = control_governance
    rows = conn.execute(sa.select(t.c.position, t.c.event_type, t.c.ts_ns, t.c.payload).where(
        t.c.event_type.in_(("LimitChangeApproved", "LimitChangeReverted")))
        .order_by(t.c.position))
    out = []
    for position, kind, ts, payload in rows:
        body = orjson.loads(payload)
        if body.get("scope") == "firm" and body.get("field") == "credit_limit":
            out.append({"position": position, "type": kind, "ts_ns": ts, "body": body})
    return out


def _limit_use(conn: sa.Connection, trading_date: str, mode: str,
               governance: list[dict[str, Any]], configured: Decimal | None) -> dict[str, Any]:
    day = conn.execute(sa.select(control_days.c.firm_peak_exposure, control_days.c.firm_peak_ns)
                       .where(control_days.c.trading_date == trading_date)).one()
    accounts_rows = [dict(r) for r in conn.execute(
        sa.select(control_day_accounts).where(control_day_accounts.c.trading_date == trading_date)
        .order_by(control_day_accounts.c.account_id)).mappings()]
    accounts = []
    for row in accounts_rows:
        peak, limit = row["peak_exposure"], row["peak_limit"]
        if limit is None:
            limit = row["credit_limit"]
        eod = _exposure(row, mode)
        last_limit = row["credit_limit"]
        accounts.append({
            "account_id": row["account_id"],
            "credit_limit": _text(limit),
            "peak_exposure": _text(peak),
            "peak_at": iso_ns(row["peak_ns"]),
            "peak_use_pct": _pct(peak, limit),
            "end_of_day_exposure": _text(eod),
            "end_of_day_limit": _text(last_limit),
            "end_of_day_use_pct": _pct(eod, last_limit),
            "breaches": row["breaches"],
            "accepted": row["accepted"],
            "rejected": row["rejected"],
        })
    changes = _firm_changes(conn)
    ranked = sorted((a for a in accounts if a["peak_use_pct"] is not None),
                    key=lambda a: (-Decimal(a["peak_use_pct"]), a["account_id"]))
    charted = [FIRM] + ["account:" + a["account_id"] for a in ranked[:CHART_ACCOUNTS]]
    t = control_exposure_buckets
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for bucket in conn.execute(sa.select(t).where(t.c.trading_date == trading_date,
                                                  t.c.scope.in_(charted))
                               .order_by(t.c.scope, t.c.bucket_ns)).mappings():
        series[bucket["scope"]].append(dict(bucket))
    firm_samples = series.get(FIRM, [])
    firm_breaches = 0
    for sample in firm_samples:
        in_force, _ = firm_limit_at(changes, sample["at_ns"], configured)
        if in_force is not None and sample["exposure"] > in_force:
            firm_breaches += 1
    end_ns = max((x["at_ns"] for x in firm_samples), default=0)
    firm_peak, firm_peak_ns = day
    firm_limit, source = firm_limit_at(
        changes, firm_peak_ns if firm_peak_ns is not None else end_ns, configured)
    eod_limit, _ = firm_limit_at(changes, end_ns, configured)
    sides = {k: sum((r[k] for r in accounts_rows), Decimal(0))
             for k in ("buy_entered", "sell_entered", "buy_filled", "sell_filled")}
    firm_eod = _exposure(sides, mode)
    firm = {
        "credit_limit": _text(firm_limit),
        "credit_limit_source": source,
        "peak_exposure": _text(firm_peak),
        "peak_at": iso_ns(firm_peak_ns),
        "peak_use_pct": _pct(firm_peak, firm_limit),
        "end_of_day_exposure": _text(firm_eod),
        "end_of_day_use_pct": _pct(firm_eod, eod_limit),
        "breaches": firm_breaches,
    }
    intraday = []
    for scope in charted:
        points = []
        for x in series.get(scope, []):
            limit = (firm_limit_at(changes, x["at_ns"], configured)[0] if scope == FIRM
                     else x["credit_limit"])
            points.append([iso_ns(x["bucket_ns"]), _text(x["exposure"]), _text(limit)])
        intraday.append({"scope": scope, "points": points})
    return {"bucket_seconds": BUCKET_NS // 1_000_000_000, "firm": firm, "accounts": accounts,
            "intraday": intraday}


# ------------------------------------------------------------------------ items 2, 4-9


def _rejections(conn: sa.Connection, trading_date: str) -> dict[str, Any]:
    t = control_rejections
    by_control: dict[str, dict[str, int]] = defaultdict(dict)
    for control, account, orders in conn.execute(
            sa.select(t.c.control, t.c.account_id, t.c.orders)
            .where(t.c.trading_date == trading_date).order_by(t.c.control, t.c.account_id)):
        by_control[control][account] = orders
    order = {name: i for i, name in enumerate(NEW_ORDER_CONTROLS)}
    rows = [{"control": c, "total": sum(accounts.values()), "by_account": accounts}
            for c, accounts in sorted(by_control.items(),
                                      key=lambda kv: (order.get(kv[0], len(order)), kv[0]))]
    return {"total": sum(r["total"] for r in rows), "by_control": rows}


def _limit_changes(governance: list[dict[str, Any]]) -> dict[str, Any]:
    changes: dict[str, dict[str, Any]] = {}
    for g in governance:
        if g["type"] not in LIMIT_EVENTS:
            continue
        body = g["body"]
        c = changes.setdefault(body["change_id"], {
            "change_id": body["change_id"], "scope": body["scope"], "field": body["field"],
            "old_value": None, "new_value": None, "requested_by": None, "requested_at": None,
            "reason": None, "approved_by": None, "approved_at": None, "approval_reason": None,
            "rejected_by": None, "expires_at": None, "reverted": False, "reverted_at": None,
            "status": None})
        match g["type"]:
            case "LimitChangeRequested":
                c.update(old_value=body["old_value"], new_value=body["new_value"],
                         requested_by=g["actor"], requested_at=iso_ns(g["ts_ns"]),
                         reason=body["reason"], expires_at=iso_ns(body["expires_ns"]),
                         status="requested")
            case "LimitChangeApproved":
                c.update(old_value=body["old_value"], new_value=body["new_value"],
                         approved_by=g["actor"], approved_at=iso_ns(g["ts_ns"]),
                         approval_reason=body["reason"], expires_at=iso_ns(body["expires_ns"]),
                         status="approved")
            case "LimitChangeRejected":
                c.update(rejected_by=g["actor"], status="rejected")
            case "LimitChangeReverted":
                c.update(reverted=True, reverted_at=iso_ns(g["ts_ns"]), status="reverted")
    rows = list(changes.values())
    open_temporary = [c["change_id"] for c in rows
                      if c["status"] == "approved" and c["expires_at"] is not None]
    return {"changes": rows, "temporary_still_open": open_temporary}


def _kill_switches(conn: sa.Connection, trading_date: str,
                   governance: list[dict[str, Any]]) -> dict[str, Any]:
    events = []
    for g in governance:
        if g["type"] not in KILL_EVENTS:
            continue
        body = g["body"]
        tripped = g["type"] == "KillSwitchTripped"
        events.append({
            "event": "tripped" if tripped else "reset", "scope": body["scope"],
            "at": iso_ns(g["ts_ns"]), "by": g["actor"], "reason": body["reason"],
            "trigger": body.get("trigger"), "threshold": body.get("threshold"),
            "observed": body.get("observed"),
            "canceled_orders": len(body.get("canceled_orders", ())) if tripped else None})
    t = control_rejections
    refused = {control: dict(conn.execute(
        sa.select(t.c.account_id, t.c.orders).where(
            t.c.trading_date == trading_date, t.c.control == control)
        .order_by(t.c.account_id)).all()) for control in ("rate", "kill_switch")}
    return {"kill_switch_events": events,
            # 15c3-5(c)(1)(ii) throttle: orders refused by the rate control, per account.
            "throttle_rejections": refused["rate"],
            "kill_switch_rejections": refused["kill_switch"]}


def _entitlements(governance: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"event": g["type"], "username": g["body"].get("username"),
             "account_id": g["body"].get("account_id"), "role": g["body"].get("role"),
             "by": g["actor"], "at": iso_ns(g["ts_ns"]), "reason": g["body"].get("reason")}
            for g in governance if g["type"] in ENTITLEMENT_EVENTS]


def _clock_statement(records: list[dict[str, Any]]) -> str:
    """Today's statement, unless the day's records show a time reference was checked."""
    references = sorted({b.get("reference") or "?" for b in records
                         if b["where"] == REFERENCE_WHERE})
    if not references:
        return CLOCK_STATEMENT
    return CLOCK_STEPS + (
        "; drift against NIST time is measured against the time reference "
        f"{', '.join(references)} (SNTP), recorded with where \"reference\": the first "
        "check of each start and trading day, each drift beyond the tolerance (behind or "
        "ahead of the reference) and its end (within), and each time the reference did not "
        "answer (unreachable: drift not measured until the next record)")


def _clock_exceptions(governance: list[dict[str, Any]]) -> dict[str, Any]:
    exceptions = [{"state": b["state"], "where": b["where"], "at": iso_ns(g["ts_ns"]),
                   "system_clock": iso_ns(b["observed_ns"]),
                   "engine_clock": iso_ns(b["held_ns"]), "step_ns": b["step_ns"],
                   "tolerance_ns": b["tolerance_ns"], "position": g["position"]}
                  for g in governance if g["type"] == CLOCK_EXCEPTION
                  for b in (g["body"],)]
    records = [g["body"] for g in governance if g["type"] == CLOCK_EXCEPTION]
    return {"recorded": True, "tolerance_ms": CAT_TOLERANCE_NS // 1_000_000,
            "exceptions": exceptions, "statement": _clock_statement(records)}


def _post_trade(day: Any) -> dict[str, Any]:
    return {"fills_delivered": day["fills"], "fill_quantity": day["fill_quantity"],
            "sequence_gaps": day["fill_gaps"], "complete": day["fill_gaps"] == 0,
            "taker_fills": day["taker_fills"], "max_delay_ns": day["max_fill_delay_ns"]}


def _coverage(conn: sa.Connection, trading_date: str) -> dict[str, Any]:
    t = control_coverage
    found = {r["control"]: r for r in conn.execute(
        sa.select(t).where(t.c.trading_date == trading_date)).mappings()}
    controls, gaps = [], []
    for name in (*NEW_ORDER_CONTROLS, *sorted(set(found) - set(NEW_ORDER_CONTROLS))):
        row = found.get(name)
        applicable = 0 if row is None else row["applicable"]
        checked = 0 if row is None else row["checked"]
        controls.append({"control": name, "applicable": applicable, "checked": checked,
                         "rejected": 0 if row is None else row["rejected"],
                         "share_pct": _pct(Decimal(checked), Decimal(applicable))})
        if checked < applicable:
            gaps.append({"control": name, "orders_missed": applicable - checked})
    if gaps:
        statement = "coverage is NOT complete: " + "; ".join(
            f"{g['control']} missed by {g['orders_missed']} order(s)" for g in gaps)
    elif not any(c["applicable"] for c in controls):
        statement = "no orders on this day: nothing to cover"
    else:
        statement = "every order passed through every applicable control (100%)"
    return {"complete": not gaps, "statement": statement, "gaps": gaps, "controls": controls}


# ------------------------------------------------------------------------ calibration


def trading_dates(conn: sa.Connection, first: str | None = None, last: str | None = None,
                  days: int | None = None) -> list[str]:
    stmt = sa.select(control_days.c.trading_date).where(control_days.c.opened_ns.is_not(None))
    if first is not None:
        stmt = stmt.where(control_days.c.trading_date >= first)
    if last is not None:
        stmt = stmt.where(control_days.c.trading_date <= last)
    found = [d for (d,) in conn.execute(stmt.order_by(control_days.c.trading_date.desc()))]
    if days is not None:
        found = found[:days]
    return sorted(found)


def calibration(conn: sa.Connection, dates: list[str],
                configured_firm_limit: Decimal | None = None) -> dict[str, Any]:
    """Peak use against the limit per account over ``dates`` (examiners: a limit with no
    basis, or absurd against actual use, is a finding), sealed."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in dates:
        use = _day_body(conn, d, configured_firm_limit)["limit_use"]
        for a in use["accounts"]:
            per[a["account_id"]].append({"date": d, **a})
        per["firm"].append({"date": d, **use["firm"]})
    rows = []
    for scope in sorted(per, key=lambda s: (s == "firm", s)):
        days = per[scope]
        peaks = [Decimal(x["peak_exposure"]) for x in days if x["peak_exposure"] is not None]
        uses = [Decimal(x["peak_use_pct"]) for x in days if x["peak_use_pct"] is not None]
        limit = next((x["credit_limit"] for x in reversed(days) if x["credit_limit"]), None)
        peak = max(peaks, default=None)
        far = (limit is not None and peak is not None and peak > 0
               and Decimal(limit) >= peak * CALIBRATION_SLACK)
        rows.append({
            "scope": scope, "days": len(days), "credit_limit": limit,
            "limits_seen": sorted({x["credit_limit"] for x in days if x["credit_limit"]},
                                  key=Decimal),
            "max_peak_exposure": _text(peak),
            "max_peak_use_pct": None if not uses else price_text(max(uses)),
            "mean_peak_use_pct": None if not uses else price_text(
                (sum(uses, Decimal(0)) / len(uses)).quantize(_PCT)),
            "days_with_breach": sum(1 for x in days if x["breaches"]),
            "assessment": ("no orders" if peak is None else
                           f"limit at least {CALIBRATION_SLACK}x peak use: document its basis"
                           if far else "limit in range of use"),
        })
    return sealed({"report": "calibration", "schema": SCHEMA,
                   "from": dates[0] if dates else None, "to": dates[-1] if dates else None,
                   "trading_dates": dates, "scopes": rows})


def parse_date(text: str) -> str:
    """An ISO calendar date (YYYY-MM-DD), as the report keys days; ValueError otherwise."""
    return date.fromisoformat(text).isoformat() if len(text) == 10 else \
        _raise(f"{text!r} is not a date YYYY-MM-DD")


def _raise(message: str) -> str:
    raise ValueError(message)


def days_between(first: str, last: str) -> int:
    return (date.fromisoformat(last) - date.fromisoformat(first)) // timedelta(days=1)
