"""The audit trail: every event in log order, with its stored body, queryable without joins."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import sqlalchemy as sa

from domain.events import ORDER_EVENTS
from projections.recorded import Recorded
from projections.tables import audit_trail


class AuditView:
    name = "audit"

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None:
        conn.execute(
            audit_trail.insert(),
            [
                {
                    "position": position,
                    "event_type": type(event).__name__,
                    "aggregate_id": str(event[0]),
                    "aggregate_version": event[1],
                    "ts_ns": event.ts_ns,
                    "actor": event.actor,
                    "source": event.source,
                    # Trading-day and engine events belong to no account or order.
                    "account_id": getattr(event, "account_id", None),
                    "order_id": str(event[0]) if type(event) in ORDER_EVENTS else None,
                    "payload": orjson.dumps(body).decode(),
                }
                for position, event, body in batch
            ],
        )
