"""Kafka is not the truth, the store is (ARCHITECTURE rule 1): an engine configured for Kafka
starts, trades and acknowledges while no broker answers; when one does, the relay publishes
everything and the read models catch up to exactly the store's content."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from commands.models import SubmitOrder
from infrastructure.bootstrap import bootstrap
from infrastructure.kafka_service import temporary_broker
from infrastructure.settings import Settings
from projections.rebuild import digest, rebuild


def test_an_engine_trades_while_kafka_is_down_and_everything_arrives_once_it_is_up(
        backend: Settings, tmp_path: object) -> None:
    with temporary_broker(start=False) as broker:  # ports fixed, nothing listening yet
        settings = backend.model_copy(update={
            "kafka_bootstrap": broker.bootstrap,
            "kafka_topic_prefix": f"t-down-{uuid.uuid4().hex[:8]}",
            "kafka_partitions": 3,
        })
        system = bootstrap(settings)
        try:
            accounts = [a.account_id for a in system.config.new_accounts()][:3]
            futures = [system.engine.submit(SubmitOrder(
                client_order_id=f"down-{i}", account_id=accounts[i % 3], symbol="AAPL",
                side=("buy", "sell")[i % 2], quantity=5 + i, order_type="limit",
                limit_price=Decimal("190.00"), time_in_force="day", actor="outage"))
                for i in range(40)]
            outcomes = [f.result(timeout=30) for f in futures]  # acknowledged without Kafka
            assert all(o.order is not None for o in outcomes)
            head = system.store.stored_head()
            assert head >= 41
            assert system.relay is not None
            deadline = time.monotonic() + 30
            while system.relay.last_error is None:  # it tries, fails, says so, retries
                assert time.monotonic() < deadline, "the relay never reported the outage"
                time.sleep(0.1)
            assert system.relay.position == 0
            assert system.projections.position == 0

            broker.start()
            assert system.projections.wait_for(head, timeout=90), system.projections.lag()
            # The consumers may see the records before the relay's checkpoint lands (the
            # relay moves its position only once the checkpoint is acknowledged, and a first
            # attempt against a broker still electing leaders may fail after the events went
            # out): wait for the relay too, then for its error to clear.
            assert system.relay.wait_for(head, timeout=90), repr(system.relay.last_error)
            deadline = time.monotonic() + 30
            while system.relay.last_error is not None:
                assert time.monotonic() < deadline, repr(system.relay.last_error)
                time.sleep(0.05)
            with system.read_models.connect() as conn:
                live = digest(conn)
            rebuilt = rebuild(system.store,
                              f"sqlite:///{settings.data_dir / 'rebuilt.sqlite'}")
            assert live == rebuilt
        finally:
            system.close()
