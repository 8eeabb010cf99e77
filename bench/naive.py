"""Row 4: the naive baseline, an eventsourcing ``Application`` saving one aggregate per order.

No engine, no controls, no group commit: each order is an ``Aggregate`` created through an
``@event("Submitted")`` method and saved with its own ``app.save`` (one transaction each).
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.workload import order_fields


class NaiveOrder(Aggregate):
    @event("Submitted")
    def __init__(self, account_id: str, client_order_id: str, symbol: str, side: str,
                 quantity: int, limit_price: Decimal, time_in_force: str) -> None:
        self.account_id = account_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.limit_price = limit_price
        self.time_in_force = time_in_force


class NaiveOrders(Application[object]):
    pass


def _orders(n: int) -> list[dict[str, object]]:
    return [
        {k: f[k] for k in ("account_id", "client_order_id", "symbol", "side", "quantity",
                           "time_in_force")} | {"limit_price": Decimal(str(f["limit_price"]))}
        for f in order_fields(n, seed=31, prefix="N")
    ]


def _run(env: dict[str, str], n: int) -> float:
    orders = _orders(n)
    app = NaiveOrders(env=env)
    try:
        t0 = time.perf_counter()
        for fields in orders:
            app.save(NaiveOrder(**fields))  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        assert app.recorder.max_notification_id() == n  # type: ignore[attr-defined]
    finally:
        app.close()
    return n / seconds


def sqlite(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        return _run({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                     "SQLITE_DBNAME": str(Path(tmp) / "naive.sqlite")}, n)


def postgres(url: str, n: int) -> float:
    parts = urlsplit(url)
    return _run({
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or ""),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
    }, n)
