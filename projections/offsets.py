"""Where a Kafka-fed projection stands, per partition, stored with the read models.

Read and written inside the transaction that applies the records (ARCHITECTURE rule 6), so
the views and the offsets move together or not at all: a projector killed at any point
resumes exactly after what it committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa

from projections.runner import ConcurrentProjectionError
from projections.tables import projection_offsets as t
from projections.tables import projection_positions


class PartitionState(NamedTuple):
    next_offset: int  # where to resume reading
    last_position: int  # the last log position applied from this partition (0: none)


START = PartitionState(0, 0)


def load(conn: sa.Connection, consumer: str, topic: str,
         partitions: Iterable[int] | None = None) -> dict[int, PartitionState]:
    stmt = sa.select(t.c.partition, t.c.next_offset, t.c.last_position).where(
        t.c.consumer == consumer, t.c.topic == topic)
    if partitions is not None:
        stmt = stmt.where(t.c.partition.in_(list(partitions)))
    return {p: PartitionState(o, pos) for p, o, pos in conn.execute(stmt)}


def save(conn: sa.Connection, consumer: str, topic: str, partition: int,
         old: PartitionState | None, new: PartitionState) -> None:
    """Move a partition's state, failing if another projector moved it first (compare and
    set on the offset: two projectors on one database never both apply a record)."""
    if old is None:
        conn.execute(t.insert().values(consumer=consumer, topic=topic, partition=partition,
                                       next_offset=new.next_offset,
                                       last_position=new.last_position))
        return
    moved = conn.execute(
        t.update().where(t.c.consumer == consumer, t.c.topic == topic,
                         t.c.partition == partition, t.c.next_offset == old.next_offset)
        .values(next_offset=new.next_offset, last_position=new.last_position))
    if moved.rowcount != 1:
        raise ConcurrentProjectionError(
            f"offset of {consumer} on {topic}[{partition}] moved from {old.next_offset} by "
            "another projector")


class MixedFeedError(RuntimeError):
    """The read models were built from the other feed (the store's log vs Kafka)."""


def check_feed(conn: sa.Connection, *, kafka: bool) -> None:
    """Refuse to feed read models from Kafka that were built from the store's log, or the
    reverse: the two keep their progress apart (positions vs offsets), so switching would
    apply every event a second time. Rebuild into a fresh database instead (replay)."""
    other = projection_positions if kafka else t
    if conn.execute(sa.select(sa.func.count()).select_from(other)).scalar():
        built, asked = ("the store's log", "Kafka") if kafka else ("Kafka", "the store's log")
        raise MixedFeedError(
            f"these read models were built from {built}; feeding them from {asked} would "
            "apply every event again. Replay into a fresh database (`marketlog replay`) and "
            "point MARKETLOG_READ_DATABASE_URL at it")
