"""The projector fed from Kafka: the events topic into the read models, exactly once.

Each poll's records are applied in ONE read-model transaction together with, per partition,
the next offset and the last log position applied (projections/offsets.py); Kafka's own
offset commits are never used. A record takes effect only if it is the next of its
partition in log order (its ``prev`` header is the last position applied from there), so
re-deliveries, the relay's re-published tail and stray copies of a failed send are all
skipped (infrastructure/relay.py explains the copies).

Order: one account's events are ordered within a partition, not across partitions; every
view is per order, per (account, symbol) or keyed by log position, so it is correct under
that order. How far the read models are "as of the log" is told by the relay's checkpoints:
the watermark is the newest checkpoint whose per-partition offsets have all been applied,
i.e. every event up to its position is in the views. Read-your-writes waits on it.

A record that cannot be applied (bad headers, an unknown event or schema version, a hash
that does not match) stops the projector with an error naming topic, partition and offset:
everything before it is applied, its partition's stored offset is that record's (never
past it: no silent skip), and a restart stops there again until it is dealt with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from infrastructure import kafka_clients
from infrastructure.kafka_clients import Consumer, Received
from infrastructure.kafka_log import (
    Checkpoint,
    MalformedRecord,
    Topics,
    decode_event,
    read_event_record,
)
from infrastructure.relay import last_checkpoint
from projections import offsets
from projections.recorded import Recorded, recorded
from projections.runner import View, all_views

log = logging.getLogger(__name__)

POLL_MS = 50
# Behind the published log yet nothing received for this long: the consumer is stuck (seen
# with kafka-python: a rebalance right after a topic's creation that never completes) and is
# replaced by a new one, which joins the group afresh.
STALL_S = 10.0
MAX_BACKOFF_S = 5.0


class ProjectorHalted(RuntimeError):
    """The projector stopped at a record it cannot apply (see ``cause``)."""


class KafkaProjectionRunner:
    """Same interface as projections.runner.ProjectionRunner (position, wait_for, catch_up,
    notify, start, stop, last_error), so the API and CLI do not care which feeds the views.

    ``group``: the consumer group (scale-out by partitions); None assigns every partition
    to this consumer (replays into a fresh database). ``until_ns``: apply only events
    stamped at or before it (as-of replay).
    """

    def __init__(self, read_models: sa.Engine, bootstrap: str, topics: Topics, *,
                 group: str | None, batch_size: int = 5000,
                 views: Sequence[View] | None = None, until_ns: int | None = None,
                 consumer_name: str | None = None,
                 before_catch_up: Callable[[], object] | None = None,
                 head: Callable[[], int] | None = None, client: str = "kafka-python") -> None:
        self.engine = read_models
        self.bootstrap = bootstrap
        self.client = client
        self.topics = topics
        self.group = group
        self.consumer_name = consumer_name or group or "replay"
        self.batch_size = batch_size
        self.views = tuple(views) if views is not None else all_views()
        self.until_ns = until_ns
        self.before_catch_up = before_catch_up
        self.head = head
        self.last_error: BaseException | None = None
        self.halted: Exception | None = None  # a record it cannot apply, or mixed feeds
        self.applied: dict[int, offsets.PartitionState] = {}
        self.latest_checkpoint: Checkpoint | None = None
        # Checkpoints not yet covered, oldest first. Bounded: dropping the oldest only makes
        # the watermark move in coarser steps, never past what is applied.
        self._pending: deque[Checkpoint] = deque(maxlen=10_000)
        self._max_applied = 0
        self._progress_at = time.monotonic()
        self._position = 0
        self._applied_cv = threading.Condition()
        self._consuming = threading.Lock()
        self._consumer: Consumer | None = None
        self._checkpoints: Consumer | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading state

    @property
    def position(self) -> int:
        """Every event up to this log position is in the views (see module doc)."""
        with self._applied_cv:
            return self._position

    def wait_for(self, position: int, timeout: float) -> bool:
        with self._applied_cv:
            return self._applied_cv.wait_for(lambda: self._position >= position, timeout)

    def lag(self) -> dict[str, Any]:
        """Per partition: next offset applied, end offset, lag in records; and positions."""
        cp = self.latest_checkpoint
        ends = dict(cp.next_offsets) if cp else {}
        parts = sorted(set(ends) | set(self.applied))
        return {
            "position": self.position,
            "published_position": cp.position if cp else 0,
            "lag_events": max(0, (cp.position if cp else 0) - self.position),
            "partitions": [
                {"partition": p, "next_offset": self.applied.get(p, offsets.START).next_offset,
                 "published_offset": ends.get(p, 0),
                 "lag_records": max(0, ends.get(p, 0)
                                    - self.applied.get(p, offsets.START).next_offset)}
                for p in parts
            ],
        }

    # ------------------------------------------------------------------ consumers

    def _open(self) -> None:
        if self._consumer is not None:
            return
        with self.engine.connect() as conn:
            offsets.check_feed(conn, kafka=True)
        events = self.topics.events
        # The checkpoints first, the group last: a start that fails must leave no member in
        # the group holding the partitions (librdkafka joins in the background at once).
        opened: list[Consumer] = []
        try:
            checkpoints = kafka_clients.consumer(self.client, self.bootstrap, None, 10_000)
            opened.append(checkpoints)
            # Both topics must exist (the relay creates them) before the group is joined: a
            # member that subscribes to a topic not there yet is assigned nothing until its
            # next metadata refresh, minutes later. Missing => this start fails and retries.
            for topic in (self.topics.checkpoints, events):
                checkpoints.partitions_for(topic, timeout=5.0)
            # A projector resuming needs only the newest checkpoint (later ones follow); one
            # starting from nothing (a replay) reads them all, so its position moves.
            with self.engine.connect() as conn:
                fresh = not offsets.load(conn, self.consumer_name, events)
            end = checkpoints.end_offset(self.topics.checkpoints, 0)
            checkpoints.assign(self.topics.checkpoints, {0: 0 if fresh else max(0, end - 1)})
            consumer = kafka_clients.consumer(self.client, self.bootstrap, self.group,
                                              self.batch_size)
            opened.append(consumer)
            if self.group is not None and consumer.joins_groups_reliably:
                consumer.subscribe(events, self._starts)
            else:
                consumer.assign(events, self._starts(consumer.partitions_for(events)))
        except BaseException:
            for c in opened:
                try:
                    c.close()
                except Exception:  # closing after a failed start
                    log.debug("closing a consumer", exc_info=True)
            raise
        self._consumer, self._checkpoints = consumer, checkpoints

    def _close(self) -> None:
        for c in (self._consumer, self._checkpoints):
            if c is not None:
                try:
                    c.close()
                except Exception:  # closing after a failure
                    log.debug("closing a consumer", exc_info=True)
        self._consumer = self._checkpoints = None

    def _starts(self, partitions: list[int]) -> dict[int, int]:
        """Where to read each partition from: the offsets stored with the read models."""
        with self.engine.connect() as conn:
            stored = offsets.load(conn, self.consumer_name, self.topics.events)
        for p in partitions:
            self.applied[p] = stored.get(p, offsets.START)
        return {p: self.applied[p].next_offset for p in partitions}

    # ------------------------------------------------------------------ applying

    def step(self, timeout_ms: int = POLL_MS) -> int:
        """One poll: apply what arrived, follow the checkpoints; the records applied."""
        self._open()
        assert self._consumer is not None
        # Records applied but not yet covered by a checkpoint: its record follows the events
        # by milliseconds, so wait for it rather than for more events (a poll's timeout).
        awaiting = self._max_applied > self.position
        polled = self._consumer.poll(min(timeout_ms, 5) if awaiting else timeout_ms,
                                     self.batch_size)
        applied = self._apply(polled) if polled else 0
        self._follow_checkpoints(10 if awaiting and not polled else 0)
        now = time.monotonic()
        behind = self.latest_checkpoint is not None and \
            self.latest_checkpoint.position > self.position
        if polled or not behind:
            self._progress_at = now
        elif now - self._progress_at > STALL_S:
            log.warning("projector: %s s behind the published log without receiving anything; "
                        "replacing the consumer", STALL_S)
            self._close()
            self._progress_at = now
        return applied

    def _apply(self, polled: dict[tuple[str, int], list[Received]]) -> int:
        batch: list[Recorded] = []
        moves: dict[int, tuple[offsets.PartitionState | None, offsets.PartitionState]] = {}
        bad: MalformedRecord | None = None
        try:
            with self.engine.begin() as conn:
                stored = offsets.load(conn, self.consumer_name, self.topics.events,
                                      [partition for _, partition in polled])
                for (topic, partition), records in polled.items():
                    old = stored.get(partition)
                    next_offset, last = old or offsets.START
                    resume = records[-1].offset + 1
                    for r in records:
                        if r.offset < next_offset:
                            continue  # applied before (a re-delivery after a rebalance)
                        try:
                            rec = read_event_record(topic, partition, r.offset, r.headers,
                                                    r.value)
                            if rec.position <= last or rec.prev != last:
                                continue  # a copy re-published by the relay, out of sequence
                            event, body = decode_event(rec)
                        except MalformedRecord as exc:
                            # What came before it is applied and stored; the partition
                            # stops AT this record (a restart stops here again), the
                            # others go on with this poll; then the projector halts.
                            bad = bad or exc
                            resume = r.offset
                            break
                        if self.until_ns is not None and event.ts_ns > self.until_ns:
                            continue  # as-of replay: after the point in time asked for
                        batch.append(recorded(rec.position, event, body))
                        last = rec.position
                    moves[partition] = (old, offsets.PartitionState(resume, last))
                batch.sort(key=lambda r: r.position)
                if batch:
                    for view in self.views:
                        view.process(conn, batch)
                for partition, (old, new) in moves.items():
                    offsets.save(conn, self.consumer_name, self.topics.events, partition,
                                 old, new)
        except BaseException:
            # Nothing of this poll was applied: read it again from the stored offsets (a new
            # consumer starts there).
            self._close()
            raise
        for partition, (_, new) in moves.items():
            self.applied[partition] = new
        if batch:
            self._max_applied = max(self._max_applied, batch[-1].position)
        if bad is not None:
            self._close()  # its position is past the bad record; a restart reads from it
            raise bad
        return len(batch)

    def _follow_checkpoints(self, wait_ms: int = 0) -> None:
        assert self._checkpoints is not None
        for records in self._checkpoints.poll(wait_ms, 10_000).values():
            for r in records:
                cp = Checkpoint.decode(r.value)
                self._pending.append(cp)
                self.latest_checkpoint = cp
        reached = None
        while self._pending and all(
                self.applied.get(p, offsets.START).next_offset >= o
                for p, o in self._pending[0].next_offsets.items()):
            reached = self._pending.popleft().position
        if reached is not None:
            with self._applied_cv:
                if reached > self._position:
                    self._position = reached
                    self._applied_cv.notify_all()

    # ------------------------------------------------------------------ driving

    def catch_up(self, timeout: float = 120.0) -> int:
        """Apply everything up to the store's head (publishing it first when the relay runs
        in this process); the position reached. Raises ProjectorHalted or TimeoutError."""
        if self.before_catch_up is not None:
            self.before_catch_up()
        if self.head is not None:
            target = self.head()
        else:  # no store at hand: what the relay has published so far
            newest = last_checkpoint(self.bootstrap, self.topics)
            target = newest.position if newest is not None else 0
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            if not self.wait_for(target, timeout):
                raise TimeoutError(self._behind(target))
            return self.position
        with self._consuming:
            while True:
                if self.halted is not None:
                    raise ProjectorHalted(str(self.halted)) from self.halted
                try:
                    self.step()
                except (MalformedRecord, offsets.MixedFeedError) as exc:
                    self.halted = exc
                    raise ProjectorHalted(str(exc)) from exc
                if self.position >= target:
                    return self.position
                if time.monotonic() > deadline:
                    raise TimeoutError(self._behind(target))

    def _behind(self, target: int) -> str:
        return (f"the read models reached log position {self.position} of {target} "
                f"({self.last_error or self.halted or 'still catching up'})")

    def notify(self) -> None:
        """Nothing to do: the projector polls Kafka continuously (kept for the interface)."""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("projector already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="kafka-projector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._consuming:
            self._close()

    def run_forever(self) -> None:
        """`marketlog project`: apply until interrupted or halted."""
        self._run()
        if self.halted is not None:
            raise ProjectorHalted(str(self.halted)) from self.halted

    def _run(self) -> None:
        failures = 0
        with self._consuming:
            while not self._stopping.is_set():
                try:
                    self.step()
                except (MalformedRecord, offsets.MixedFeedError) as exc:
                    self.halted = self.last_error = exc
                    log.error("projector stopped: %s", exc)
                    self._close()
                    return
                except Exception as exc:
                    # A database or broker outage: retry, backing off; on last_error meanwhile.
                    failures += 1
                    self.last_error = exc
                    log.warning("projector: applying failed (attempt %d): %s", failures, exc)
                    self._close()
                    self._stopping.wait(min(0.2 * 2**failures, MAX_BACKOFF_S))
                    continue
                failures = 0
                self.last_error = None
            self._close()


