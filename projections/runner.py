"""Follows the store's notification log and keeps every read model up to date."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa

from projections.audit import AuditView
from projections.controls_stats import ControlStatsView
from projections.orders import OrdersView
from projections.positions import PositionsView
from projections.recorded import Recorded, decode_notification
from projections.tables import projection_positions

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.2
MAX_BACKOFF_S = 5.0


class NotificationSource(Protocol):
    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` (position, topic, state) entries with position > ``after``, in order."""
        ...


class View(Protocol):
    name: str

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None: ...


class Projector(Protocol):
    """What the API and CLI use of whatever feeds the read models: this module's runner
    (the store's notification log, embedded default) or infrastructure.kafka_projector."""

    last_error: BaseException | None
    views: tuple[View, ...]

    @property
    def position(self) -> int: ...

    def wait_for(self, position: int, timeout: float) -> bool: ...

    def catch_up(self) -> int: ...

    def notify(self) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


def all_views() -> tuple[View, ...]:
    """Every read model, in the order they are applied (one transaction for all)."""
    return (OrdersView(), PositionsView(), AuditView(), ControlStatsView())


def select_views(names: Sequence[str] | None) -> tuple[View, ...]:
    """The views named (all when None); an unknown name raises ValueError listing them."""
    views = all_views()
    if not names:
        return views
    known = {v.name: v for v in views}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown projection(s) {unknown}; known: {sorted(known)}")
    return tuple(v for v in views if v.name in names)


class ConcurrentProjectionError(RuntimeError):
    """Another runner moved a view's position under this one; its batch is rolled back."""


class ProjectionRunner:
    def __init__(
        self, engine: sa.Engine, source: NotificationSource, batch_size: int = 5000, *,
        views: Sequence[View] | None = None, until_ns: int | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.batch_size = batch_size
        self.views: tuple[View, ...] = tuple(views) if views is not None else all_views()
        self.until_ns = until_ns  # as-of replay: events stamped later are not applied
        self._feed_checked = False
        self.last_error: BaseException | None = None
        self._position = 0
        self._applied = threading.Condition()
        # catch_up may be called by the background thread and by a caller (tests, rebuild)
        # at once; serialising them here avoids pointless optimistic-lock conflicts.
        self._catching_up = threading.Lock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def position(self) -> int:
        """The last log position every view has applied."""
        with self._applied:
            return self._position

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until every view has applied ``position`` (read-your-writes for the API)."""
        with self._applied:
            return self._applied.wait_for(lambda: self._position >= position, timeout)

    def catch_up(self) -> int:
        """Apply every new notification, one transaction per batch; return the position reached."""
        with self._catching_up:
            while True:
                reached, count = self._apply_next_batch()
                self._publish(reached)
                if count < self.batch_size:
                    return reached

    def apply_next_batch(self) -> int:
        """Apply one batch (replays with a progress bar); the number of log entries read."""
        with self._catching_up:
            reached, count = self._apply_next_batch()
            self._publish(reached)
            return count

    def _apply_next_batch(self) -> tuple[int, int]:
        with self.engine.begin() as conn:
            if not self._feed_checked:
                from projections.offsets import check_feed  # imports this module

                check_feed(conn, kafka=False)
                self._feed_checked = True
            names = [v.name for v in self.views]
            stored = dict.fromkeys(names, 0)
            stored.update(
                conn.execute(
                    sa.select(projection_positions).where(projection_positions.c.name.in_(names))
                ).all()
            )
            rows = self.source.select(min(stored.values()), self.batch_size)
            if not rows:
                return min(stored.values()), 0
            batch = [decode_notification(*row) for row in rows]
            reached = batch[-1].position
            if self.until_ns is not None:
                batch = [r for r in batch if r.event.ts_ns <= self.until_ns]
            for view in self.views:
                # A view ahead of the others (e.g. the others were added later) skips what
                # it has already applied: the exactly-once half of ARCHITECTURE rule 6.
                pending = [r for r in batch if r.position > stored[view.name]]
                if pending:
                    _advance(conn, view.name, stored[view.name], reached)
                    view.process(conn, pending)
            return reached, len(rows)

    def _publish(self, position: int) -> None:
        with self._applied:
            if position > self._position:
                self._position = position
                self._applied.notify_all()

    def notify(self) -> None:
        """New events were committed to the store: catch up now rather than at the next tick."""
        self._wakeup.set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("projection runner already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="projections", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            # Cleared before catching up so a notify() arriving meanwhile is not lost.
            self._wakeup.clear()
            try:
                self.catch_up()
            except Exception as exc:
                # Read models lag rather than die: a database blip or a bad deploy must not
                # silently stop the views; the error stays visible on last_error until fixed.
                failures += 1
                self.last_error = exc
                log.exception("projection catch-up failed (attempt %d); retrying", failures)
                # Backs off, but a commit or a reader waiting for its writes (notify) asks
                # again at once: after an outage, views catch up as soon as someone needs them.
                self._wakeup.clear()
                self._wakeup.wait(min(IDLE_WAIT_S * 2**failures, MAX_BACKOFF_S))
                continue
            failures = 0
            self.last_error = None
            self._wakeup.wait(IDLE_WAIT_S)


def _advance(conn: sa.Connection, name: str, old: int, new: int) -> None:
    """Move a view's stored position, failing if another runner moved it first.

    Compare-and-set rather than a blind write: a second runner on the same database (a
    restarted process overlapping the old one) must roll back, not apply the batch twice.
    """
    if old == 0:
        # Log positions start at 1, so 0 means "no row yet"; a racing insert of the same name
        # fails on the primary key, which rolls back just the same.
        conn.execute(projection_positions.insert().values(name=name, position=new))
        return
    moved = conn.execute(
        projection_positions.update()
        .where(projection_positions.c.name == name, projection_positions.c.position == old)
        .values(position=new)
    )
    if moved.rowcount != 1:
        raise ConcurrentProjectionError(
            f"position of view {name!r} moved from {old} by another runner"
        )
