"""The audit trail: every event in log order, with its stored body, queryable without joins."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import sqlalchemy as sa

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
                    "aggregate_id": str(event.order_id),
                    "aggregate_version": event.version,
                    "ts_ns": event.ts_ns,
                    "actor": event.actor,
                    "source": event.source,
                    "account_id": event.account_id,
                    "order_id": str(event.order_id),
                    "payload": orjson.dumps(body).decode(),
                }
                for position, event, body in batch
            ],
        )
