"""An order's lineage: every event of the order in log order, from the audit trail, with what
each decision used and where each record sits in the hash chain (issue 8, item 2).

What an examiner asks of one order (SEC 15c3-5 and 17a-4), and where the answer comes from:

* which controls ran on it and the inputs each used: the acceptance's ``checks`` and its
  recorded inputs (reference price with its source and as-of time, exposure before, the
  limits and their version, the firm and symbol limit versions in ``inputs``);
* who approved each limit version in force: the ``LimitChangeApproved`` of that scope and
  version (approver, and the ``LimitChangeRequested`` it approved: requester and reason),
  or the ``LimitChangeReverted`` that restored it, or "configuration seed" when no change
  produced it (the firm's configuration file sets initial values only);
* fills with trade id and counterparty; rejections with control, threshold and observed;
  cancels and replaces with their requests and confirmations.

Every record carries its chain links (position, prev_hash, hash) and two checks, because
each catches what the other cannot:

* ``recomputed``: the record's hash recomputed from the audit-trail row (position, type,
  aggregate id and version, stored body) exactly as the store's verification does
  (infrastructure/codec.py ``check_record``). It needs no store and shows a read-model row
  edited after projection.
* ``store``: the store's own record at that position, the source of truth (ARCHITECTURE
  rule 1), holds the same hash and is itself intact, and the row's ``prev_hash`` is the hash
  of the store's record just before it. This shows a read model that no longer matches the
  store (rebuilt from another store, or edited consistently, hash included) and checks the
  link to the predecessor, which usually belongs to another order and so is not in the
  lineage at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa

from infrastructure import codec
from projections.queries import get_order, iso_timestamp
from projections.tables import audit_trail

LIMIT_SOURCES = ("LimitChangeApproved", "LimitChangeReverted")
CONFIGURATION_SEED = "configuration seed"
# What every record shows in its own columns, so left out of "details".
_BOOKKEEPING = frozenset({"order_id", "version", "ts_ns", "actor", "source", "account_id",
                          "symbol", "schema", "prev_hash", "hash"})
_FIRM_VERSION = re.compile(r"^v(\d+)$")  # inputs["firm_limits"]: "v3"
_SYMBOL_VERSION = re.compile(r"^(\S+) limits v(\d+)$")  # inputs["max_qty"]: "AAPL limits v2"


def order_lineage(conn: sa.Connection, order_id: str, store: Any | None = None
                  ) -> dict[str, Any] | None:
    """The lineage of an order, or None when the audit trail has no event of it.

    ``store``: the event store to check each record against (None: only the recomputation).
    """
    a = audit_trail.c
    found = conn.execute(sa.select(audit_trail).where(a.order_id == str(order_id))
                         .order_by(a.position)).mappings().all()
    if not found:
        return None
    stored = _store_hashes(store, [r["position"] for r in found]) if store is not None else None
    records = [_record(row, stored) for row in found]
    first = orjson.loads(found[0]["payload"])
    wanted = {key for r in records for key in _versions_used(r, first)}
    provenance = _limit_provenance(conn, wanted, found[-1]["position"])
    for r in records:
        used = _versions_used(r, first)
        if used:
            r["limits_in_force"] = [provenance[key] for key in used]
    order = get_order(conn, order_id)
    return {
        "order_id": str(order_id),
        "account_id": found[0]["account_id"],
        "symbol": first.get("symbol"),
        "client_order_id": first.get("client_order_id"),
        "status": None if order is None else order["status"],
        "checked_against_store": store is not None,
        "chain_ok": all(r["chain"]["ok"] for r in records),
        "records": records,
    }


# ---------------------------------------------------------------------------- records


def _record(row: Any, stored: dict[int, tuple[str | None, bool, str | None]] | None
            ) -> dict[str, Any]:
    payload_text: str = row["payload"]
    payload = orjson.loads(payload_text)
    kind: str = row["event_type"]
    position: int = row["position"]
    details = {k: v for k, v in payload.items() if k not in _BOOKKEEPING}
    if kind in ("OrderAccepted", "OrderRejected", "ReplaceRequested"):
        # The controls that ran, in order (15c3-5 coverage); a rejection's list ends before
        # the control that refused.
        details["controls"] = details.pop("checks", [])
        if payload.get("reference_ts_ns") is not None:
            details["reference_as_of"] = iso_timestamp(payload["reference_ts_ns"])
    return {
        "position": position,
        "timestamp": iso_timestamp(row["ts_ns"]),
        "ts_ns": row["ts_ns"],
        "event_type": kind,
        "aggregate_version": row["aggregate_version"],
        "actor": row["actor"],
        "source": row["source"],
        "summary": summary(kind, payload),
        "details": details,
        "chain": _chain(row, payload, stored),
    }


def _chain(row: Any, payload: dict[str, Any],
           stored: dict[int, tuple[str | None, bool, str | None]] | None) -> dict[str, Any]:
    position = row["position"]
    own, prev = payload.get("hash"), payload.get("prev_hash")
    try:
        check = codec.check_record(position, codec.TOPIC_PREFIX + row["event_type"],
                                   UUID(row["aggregate_id"]), row["aggregate_version"],
                                   row["payload"].encode())
        recomputed = check.intact and check.stored == own
    except ValueError:  # an aggregate id that is no UUID: the row was edited
        recomputed = False
    chain: dict[str, Any] = {"position": position, "prev_hash": prev, "hash": own,
                             "recomputed": recomputed, "store": None, "linked": None}
    if stored is not None:
        store_hash, store_intact, before = stored.get(position, (None, False, None))
        if store_hash is None:
            chain["store"] = "missing"
        elif not store_intact:
            chain["store"] = "changed"  # the store's own record fails its hash
        else:
            chain["store"] = "same" if store_hash == own else "differs"
        chain["linked"] = before is not None and before == prev
    chain["ok"] = recomputed and chain["store"] in (None, "same") and chain["linked"] in (
        None, True)
    return chain


def _store_hashes(store: Any, positions: Iterable[int]
                  ) -> dict[int, tuple[str | None, bool, str | None]]:
    """position -> (hash stored in the store's record, whether that record is intact, hash
    of the store's record just before it). Two records a query: an order has few events."""
    out: dict[int, tuple[str | None, bool, str | None]] = {}
    for position in positions:
        start = max(position - 1, 1)
        notes = store.recorder.select_notifications(start=start, limit=2)
        by_id = {n.id: n for n in notes}
        note = by_id.get(position)
        before = codec.GENESIS_HASH if position == 1 else (
            codec.stored_hash(bytes(by_id[position - 1].state))
            if position - 1 in by_id else None)
        if note is None:
            out[position] = (None, False, before)
            continue
        check = codec.check_record(position, note.topic, note.originator_id,
                                   note.originator_version, bytes(note.state))
        out[position] = (check.stored, check.intact, before)
    return out


def summary(kind: str, p: dict[str, Any]) -> str:
    """One line a person reads in a timeline."""
    if kind in ("OrderAccepted", "OrderRejected"):
        price = p.get("limit_price") or "market"
        text = (f"{p['side']} {p['quantity']} {p['symbol']} @ {price} {p['time_in_force']} "
                f"(client id {p['client_order_id']})")
        if kind == "OrderRejected":
            return (f"{text}; rejected by {p['control']}: threshold {p['threshold']}, "
                    f"observed {p['observed']}")
        return (f"{text}; reference {p['reference_price']} ({p['reference_source']}), "
                f"exposure before {p['exposure_before']}; {len(p['checks'])} controls passed")
    if kind == "OrderFilled":
        return (f"{p['fill_quantity']} @ {p['fill_price']} ({p['liquidity']}), trade "
                f"{p['trade_id']}, counterparty {p['counterparty']}, leaves "
                f"{p['leaves_quantity']}")
    if kind == "CancelRequested":
        return f"cancel requested ({p['reason']})"
    if kind == "OrderCanceled":
        return f"canceled {p['canceled_quantity']} ({p['reason']})"
    if kind == "CancelRejected":
        return f"cancel refused at {p['stage']}: {p['reason']} (status {p['status']})"
    if kind in ("ReplaceRequested", "OrderReplaced"):
        verb = "replace requested" if kind == "ReplaceRequested" else "replaced"
        return (f"{verb}: quantity {p['old_quantity']} -> {p['quantity']}, price "
                f"{p['old_limit_price']} -> {p['limit_price']}")
    if kind == "ReplaceRejected":
        return (f"replace refused at {p['stage']} by {p['control']}: threshold "
                f"{p['threshold']}, observed {p['observed']}")
    return ", ".join(f"{k}={v}" for k, v in p.items() if k not in _BOOKKEEPING)


# ----------------------------------------------------------------- limit versions in force


def _versions_used(record: dict[str, Any], first: dict[str, Any]) -> list[tuple[str, int]]:
    """(scope, version) of every limit set a decision used: the account's (limits_version),
    the firm's (inputs.firm_limits) and the symbol's (inputs.max_qty), as recorded."""
    if record["event_type"] not in ("OrderAccepted", "OrderRejected", "ReplaceRequested"):
        return []
    details = record["details"]
    used: list[tuple[str, int]] = []
    version = details.get("limits_version")
    if isinstance(version, int) and version > 0:  # 0: rejected before the account was known
        used.append((f"account:{first.get('account_id')}", version))
    inputs = details.get("inputs") or {}
    if (m := _FIRM_VERSION.match(str(inputs.get("firm_limits", "")))) is not None:
        used.append(("firm", int(m.group(1))))
    if (m := _SYMBOL_VERSION.match(str(inputs.get("max_qty", "")))) is not None:
        used.append((f"symbol:{m.group(1)}", int(m.group(2))))
    return used


def _limit_provenance(conn: sa.Connection, wanted: set[tuple[str, int]], before: int
                      ) -> dict[tuple[str, int], dict[str, Any]]:
    """For each (scope, version): the approval (or reversion) that made it, with the request
    it approved; "configuration seed" when the log holds none before ``before``."""
    out = {key: {"scope": key[0], "version": key[1], "origin": CONFIGURATION_SEED}
           for key in wanted}
    if not wanted:
        return out
    a = audit_trail.c
    changes = conn.execute(
        sa.select(a.position, a.event_type, a.aggregate_id, a.ts_ns, a.actor, a.payload)
        .where(a.event_type.in_(LIMIT_SOURCES), a.position < before).order_by(a.position)
    ).all()
    made: dict[str, tuple[str, int]] = {}
    for position, kind, change_id, ts_ns, actor, payload_text in changes:
        p = orjson.loads(payload_text)
        key = (p.get("scope"), p.get("limits_version"))
        if key not in out:
            continue
        entry = out[key]
        entry.update({"origin": "approved" if kind == "LimitChangeApproved" else "reverted",
                      "change_id": change_id, "field": p.get("field"), "position": position,
                      "at": iso_timestamp(ts_ns), "reason": p.get("reason")})
        if kind == "LimitChangeApproved":
            entry.update({"approver": actor, "old_value": p.get("old_value"),
                          "new_value": p.get("new_value"),
                          "expires_at": None if p.get("expires_ns") is None
                          else iso_timestamp(p["expires_ns"])})
        else:  # the expiry of a temporary change restored the value before it
            entry.update({"restored_value": p.get("value"), "by": actor})
        made[change_id] = key
    if made:
        requests = conn.execute(
            sa.select(a.position, a.aggregate_id, a.ts_ns, a.actor, a.payload)
            .where(a.event_type == "LimitChangeRequested", a.aggregate_id.in_(sorted(made)))
        ).all()
        for position, change_id, ts_ns, actor, payload_text in requests:
            p = orjson.loads(payload_text)
            out[made[change_id]]["request"] = {
                "requester": actor, "at": iso_timestamp(ts_ns), "reason": p.get("reason"),
                "position": position}
    return out
