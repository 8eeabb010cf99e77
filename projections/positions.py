"""Positions and realized P&L per (account, symbol), average-cost method."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

import sqlalchemy as sa

from domain.events import OrderFilled
from domain.values import ZERO, signed_quantity
from projections.recorded import Recorded
from projections.tables import (
    decimal_binder,
    fetch_by_keys,
    insert_rows,
    positions_view,
    update_rows,
)

# Averages divide, so they round. Fixing the context here (not inheriting the calling thread's)
# is what makes a replay reproduce the stored averages and P&L digit for digit.
ARITHMETIC = Context(prec=34, rounding=ROUND_HALF_EVEN)

_COLUMNS = ("account_id", "symbol", "quantity", "average_price", "realized_pnl")
_KEYS = ("account_id", "symbol")
_MUTABLE = ("quantity", "average_price", "realized_pnl")


class PositionsView:
    name = "positions"

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None:
        fills = [r.event for r in batch if isinstance(r.event, OrderFilled)]
        if not fills:
            return
        keys = list({(f.account_id, f.symbol) for f in fills})
        rows = {
            (row["account_id"], row["symbol"]): row
            for row in fetch_by_keys(conn, positions_view, keys)
        }
        existing = set(rows)
        with localcontext(ARITHMETIC):
            for f in fills:
                row = rows.get((f.account_id, f.symbol))
                if row is None:
                    row = rows[(f.account_id, f.symbol)] = _flat(f.account_id, f.symbol)
                apply_fill(row, signed_quantity(f.side, f.fill_quantity), f.fill_price)
        # Written at the driver level (projections/tables.py): the values Core bound before.
        bind = decimal_binder(conn)
        created = []
        changed = []
        for (account_id, symbol), row in rows.items():
            quantity, average, pnl = row["quantity"], bind(row["average_price"]), \
                bind(row["realized_pnl"])
            if (account_id, symbol) in existing:
                changed.append((quantity, average, pnl, account_id, symbol))
            else:
                created.append((account_id, symbol, quantity, average, pnl))
        insert_rows(conn, positions_view, _COLUMNS, created)
        update_rows(conn, positions_view, _MUTABLE, _KEYS, changed)


def _flat(account_id: str, symbol: str) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "symbol": symbol,
        "quantity": 0,
        "average_price": ZERO,
        "realized_pnl": ZERO,
    }


def apply_fill(row: dict[str, Any], delta: int, price: Decimal) -> None:
    """Apply a signed fill quantity at ``price`` to a position row, average-cost method.

    Adding to a position (or opening one) moves the average; reducing realizes
    ``(price - average) * closed`` for a long and the mirror for a short; crossing through
    zero realizes the closed part and opens the remainder at the fill price.
    """
    held: int = row["quantity"]
    average: Decimal = row["average_price"]
    total = held + delta
    if held == 0 or (held > 0) == (delta > 0):
        row["average_price"] = (average * abs(held) + price * abs(delta)) / abs(total)
    else:
        closed = min(abs(delta), abs(held))
        direction = 1 if held > 0 else -1
        row["realized_pnl"] += (price - average) * closed * direction
        if total == 0:
            row["average_price"] = ZERO
        elif (total > 0) != (held > 0):
            row["average_price"] = price
    row["quantity"] = total
