"""The audit trail: every event in log order, with its stored body, queryable without joins."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import sqlalchemy as sa

from domain.events import ORDER_EVENTS
from projections.recorded import Recorded, key_of
from projections.tables import audit_trail, insert_rows

_COLUMNS = tuple(c.name for c in audit_trail.columns)


class AuditView:
    name = "audit"

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None:
        # Positional rows in _COLUMNS order, written at the driver level (insert_rows in
        # projections/tables.py); no column here needs a bind conversion.
        dumps = orjson.dumps
        rows = []
        for r in batch:
            event = r.event
            kind = type(event)
            key = key_of(r)
            rows.append((
                r.position,
                kind.__name__,
                key,
                event[1],
                event.ts_ns,
                event.actor,
                event.source,
                # Trading-day and engine events belong to no account or order.
                getattr(event, "account_id", None),
                key if kind in ORDER_EVENTS else None,
                dumps(r.body).decode(),  # the stored body as recorded
            ))
        insert_rows(conn, audit_trail, _COLUMNS, rows)
