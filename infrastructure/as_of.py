"""As-of replay: the book of record and the positions as they stood at a past moment.

Auditors and risk officers ask "what were the positions, the open orders, the exposure and
the limits at 14:32:07?" (``?as_of=`` on the read endpoints). The answer is computed from
the event store alone, read-only: never the live engine, never its writer lock, never a
write to the store (a store opened with ``reader=True`` serves as well as the engine's).

1. **The cut.** Every event is stamped by the engine's clock, which never goes backwards, so
   log order is time order (ARCHITECTURE rule 10): the moment is a log position, found by a
   binary search over the contiguous positions (~log2(N) one-row reads). Everything the
   answer shows is the state after that position, and the answer names it.
2. **The book** (exposure, limits and their versions, open orders): the engine's own
   recovery, ``Engine._rebuild``, run against the log cut at that position
   (``PrefixJournal``): the latest snapshot *before* the cut whose digest the hash-chained
   log records (``BookSnapshotTaken``), then the events after it up to the cut; with no such
   snapshot, the log from the start. Same code as a restart, so the as-of book cannot drift
   from what the engine would have had in memory then.
3. **The positions** (quantity, average cost, realized P&L): the book keeps quantities only,
   while average cost and realized P&L depend on every fill since the start of the log, so
   they are folded from the ``OrderFilled`` records up to the cut with the positions view's
   own arithmetic (``projections.positions.apply_fill`` in its fixed decimal context): the
   same digits as ``GET /positions``. Only fill records are decoded (the topic says which),
   so this pass is cheap even from the start. A projection replay into a throwaway SQLite
   database (``ProjectionRunner(until_ns)``, what ``marketlog replay --until`` does) gives
   the same rows but pays SQL inserts and updates for every order event, and cannot start
   from a snapshot: that is the auditor's full rebuild, not a per-request answer.

Results are cached per store and position (``AsOfCache``): the log is append-only, so the
state at a position never changes, and a dashboard paging through one moment replays once.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, NamedTuple
from uuid import uuid4

from commands.engine import Engine
from domain.book_of_record import BookOfRecord
from domain.lifecycle import LIVE_STATUSES
from domain.values import ZERO, price_text, signed_quantity
from infrastructure import codec
from infrastructure.config import FirmConfig
from infrastructure.venue import SimulatedVenue
from projections.positions import ARITHMETIC, apply_fill

log = logging.getLogger(__name__)

FILL_TOPIC = codec.TOPIC_PREFIX + "OrderFilled"
READ_BATCH = 10_000
REPLAYS_AT_ONCE = 2  # per store: as-of replays running together (others wait their turn)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH_NS = re.compile(r"[0-9]{1,25}")


# ------------------------------------------------------------------ the moment asked for


def parse_as_of(text: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (UTC when it has no offset) or of a
    bare integer, read as epoch nanoseconds. ValueError when it is neither.

    Exact integer arithmetic (a float timestamp loses microseconds far from 1970); values
    beyond the int64 range the log uses are returned as they are: they just lie before the
    first event or after the last."""
    text = text.strip()
    if _EPOCH_NS.fullmatch(text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("an ISO 8601 time (e.g. 2026-11-26T15:30:00Z; UTC without an "
                         "offset) or epoch nanoseconds") from None
    return ns_of(moment)


def ns_of(moment: datetime) -> int:
    """Epoch nanoseconds of a datetime (UTC when naive), exactly."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Aware subtraction stays in range even for year 1 or 9999 with an offset.
    return (moment - _EPOCH) // _MICROSECOND * 1_000


def iso_ns(ts_ns: int) -> str:
    """ISO 8601 UTC with all nine digits (the audit trail's form)."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


class Cut(NamedTuple):
    """Where the log stands at the moment asked for."""

    position: int  # the last log position stamped at or before it (0: before the first)
    ts_ns: int | None  # that event's time
    head: int  # the store's head when asked (a moment in the future cuts here)


def _ts_at(store: Any, position: int) -> int:
    [(at, topic, state)] = store.select(position - 1, 1)
    ts: int = codec.decode(topic, state, at).ts_ns
    return ts


def cut_at(store: Any, as_of_ns: int) -> Cut:
    """The last position whose event is stamped at or before ``as_of_ns``.

    A binary search: positions are contiguous (the store assigns them) and their times never
    decrease (the engine's clock never goes backwards: ARCHITECTURE rule 10)."""
    head = store.stored_head()
    if head == 0:
        return Cut(0, None, 0)
    last_ts = _ts_at(store, head)
    if last_ts <= as_of_ns:
        return Cut(head, last_ts, head)
    low, low_ts, high = 0, None, head  # ts(low) <= as_of < ts(high); position 0: no event
    while high - low > 1:
        mid = (low + high) // 2
        ts = _ts_at(store, mid)
        if ts <= as_of_ns:
            low, low_ts = mid, ts
        else:
            high = mid
    return Cut(low, low_ts, head)


# ------------------------------------------------------------------ the book of record


class PrefixJournal:
    """The store's log cut at ``stop``, read-only: the journal ``Engine._rebuild`` reads."""

    def __init__(self, store: Any, stop: int, batch: int = READ_BATCH) -> None:
        self.store = store
        self.stop = stop
        self.batch = batch

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """The store's ``select`` ending at the cut: a ``ProjectionRunner`` source
        (``marketlog replay --until`` stops there instead of reading the rest)."""
        if after >= self.stop:
            return []
        rows: list[tuple[int, str, bytes]] = self.store.select(after,
                                                               min(limit, self.stop - after))
        return rows

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]:
        decode = codec.decode
        while after < self.stop:
            rows = self.store.select(after, min(self.batch, self.stop - after))
            if not rows:
                return
            for position, topic, state in rows:
                yield position, decode(topic, state, position)
            after = rows[-1][0]

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """The newest snapshot strictly before the cut that still matches the log.

        Strictly before: the engine trusts a snapshot at position S only through the
        ``BookSnapshotTaken`` at S + 1 (recording its digest), which must lie inside the cut.
        The same checks as ``EventStore.latest_snapshot`` (the state's digest, and the hash of
        the record at S), bounded by the cut."""
        below = self.stop
        while True:
            row = self.store._snapshot_below(below)
            if row is None:
                return None
            position, head_hash, state, digest = row
            state = bytes(state)
            expected = (codec.GENESIS_HASH if position == 0
                        else self.store._stored_hashes([position]).get(position))
            if codec.state_hash(state) == digest and expected == head_hash:
                return position, state
            log.warning("as-of replay ignores the snapshot at position %d: it no longer "
                        "matches the log", position)
            below = position

    def append(self, events: Any) -> int:
        raise PermissionError("an as-of replay never writes to the store")

    def reset_head(self) -> None:
        pass


def new_book_factory(config: FirmConfig) -> Callable[[], BookOfRecord]:
    """A fresh book of the configured firm (what ``bootstrap.build_engine`` starts from)."""
    def new_book() -> BookOfRecord:
        return BookOfRecord(config.instruments, config.new_accounts(), config.firm,
                            users=config.new_users(),
                            symbol_limits=config.new_symbol_limits())
    return new_book


class AsOfBook(NamedTuple):
    book: BookOfRecord
    position: int
    from_snapshot: int | None  # the snapshot's position, or None (replayed from the start)


def book_at(store: Any, config: FirmConfig, position: int) -> AsOfBook:
    """The book of record after ``position``, by the engine's own recovery on the log cut
    there. No venue is started and nothing is re-released or journaled."""
    new_book = new_book_factory(config)
    # An engine used only for its recovery code: its venue is never matched against, its
    # journal refuses appends, its clock and ids are never asked for an event.
    engine = Engine(new_book,
                    lambda book: SimulatedVenue(book.instruments, None, lambda: 0),
                    PrefixJournal(store, position), clock=lambda: 0, new_id=uuid4)
    with engine.collector.paused():
        book, reached = engine._rebuild()
    return AsOfBook(book, reached, engine.recovered_from_snapshot)


# ------------------------------------------------------------------ positions


def positions_at(store: Any, position: int, batch: int = READ_BATCH
                 ) -> dict[tuple[str, str], dict[str, Any]]:
    """Position rows per (account, symbol) after ``position``: the fills from the start of
    the log folded with the positions view's arithmetic (same rows, same digits)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    decode = codec.decode
    after = 0
    with localcontext(ARITHMETIC):
        while after < position:
            found = store.select(after, min(batch, position - after))
            if not found:
                break
            for at, topic, state in found:
                if topic != FILL_TOPIC:
                    continue  # nothing else moves a position: not even decoded
                fill = decode(topic, state, at)
                key = (fill.account_id, fill.symbol)
                row = rows.get(key)
                if row is None:
                    row = rows[key] = {"account_id": key[0], "symbol": key[1], "quantity": 0,
                                       "average_price": ZERO, "realized_pnl": ZERO}
                apply_fill(row, signed_quantity(fill.side, fill.fill_quantity),
                           fill.fill_price)
            after = found[-1][0]
    return rows


def position_bodies(rows: dict[tuple[str, str], dict[str, Any]], *,
                    account_id: str | None = None,
                    accounts: Any = None) -> list[dict[str, Any]]:
    """As ``projections.queries.list_positions`` answers: by account, then symbol."""
    return [{"account_id": r["account_id"], "symbol": r["symbol"], "quantity": r["quantity"],
             "average_price": price_text(r["average_price"]),
             "realized_pnl": price_text(r["realized_pnl"])}
            for key, r in sorted(rows.items())
            if (account_id is None or key[0] == account_id)
            and (accounts is None or key[0] in accounts)]


# ------------------------------------------------------------------ open orders, exposure


def open_order_bodies(book: BookOfRecord, *, account_id: str | None = None,
                      accounts: Any = None, symbol: str | None = None,
                      status: str | None = None, limit: int = 500,
                      after: str | None = None) -> list[dict[str, Any]]:
    """The orders open after the cut (live: accepted, partially filled, pending cancel or
    replace), shaped as ``GET /orders`` answers and in its order (created, then id)."""
    chosen = sorted(
        (o for o in list(book.orders.values()) if o.status in LIVE_STATUSES
         and (account_id is None or o.account_id == account_id)
         and (accounts is None or o.account_id in accounts)
         and (symbol is None or o.symbol == symbol)
         and (status is None or o.status == status)),
        key=lambda o: (o.ts_ns, str(o.order_id)))
    if after is not None:
        keys = [(o.ts_ns, str(o.order_id)) for o in chosen]
        marker = next((k for k in keys if k[1] == after), None)
        # An id that is not among them: nothing after it (the live view's subquery is NULL).
        chosen = [] if marker is None else [o for o, k in zip(chosen, keys, strict=True)
                                            if k > marker]
    return [{"order_id": str(o.order_id), "client_order_id": o.client_order_id,
             "account_id": o.account_id, "symbol": o.symbol, "side": str(o.side),
             "quantity": o.quantity, "order_type": str(o.order_type),
             "limit_price": price_text(o.limit_price), "time_in_force": str(o.time_in_force),
             "status": str(o.status), "filled_quantity": o.filled_quantity,
             "average_fill_price": (price_text(o.filled_notional / o.filled_quantity)
                                    if o.filled_quantity else None),
             "reject": None}
            for o in chosen[:limit]]


def exposure_of(book: BookOfRecord, account_id: str) -> Decimal:
    return book.exposure(account_id)


# ------------------------------------------------------------------ one moment, cached


class AsOf:
    """The state after one log position; the book and the positions are built when first
    asked for (a ``/positions`` dashboard never pays for the book)."""

    def __init__(self, store: Any, config: FirmConfig, cut: Cut,
                 replays: threading.Semaphore | None = None) -> None:
        self.store = store
        self.config = config
        self.cut = cut
        self._lock = threading.Lock()
        self._replays = replays or threading.Semaphore(REPLAYS_AT_ONCE)
        self._book: AsOfBook | None = None
        self._positions: dict[tuple[str, str], dict[str, Any]] | None = None

    @property
    def position(self) -> int:
        return self.cut.position

    def book(self) -> AsOfBook:
        with self._lock:  # concurrent readers of one moment share a single replay
            if self._book is None:
                with self._replays:
                    self._book = book_at(self.store, self.config, self.cut.position)
            return self._book

    def positions(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            if self._positions is None:
                with self._replays:
                    self._positions = positions_at(self.store, self.cut.position)
            return self._positions

    def headers(self, as_of_ns: int) -> dict[str, str]:
        """What the answer reflects: the log position and the time of its event."""
        headers = {"X-As-Of-Position": str(self.cut.position),
                   "X-As-Of-Requested-Ns": str(as_of_ns)}
        if self.cut.ts_ns is not None:
            headers["X-As-Of-Event-Time"] = iso_ns(self.cut.ts_ns)
        return headers


class AsOfCache:
    """The last few moments asked for, by log position (append-only: never stale)."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, AsOf] = OrderedDict()
        # Replays are CPU-bound (the GIL): callers asking for many different moments at once
        # queue here instead of filling the API's thread pool (ARCHITECTURE rule 9).
        self._replays = threading.Semaphore(REPLAYS_AT_ONCE)
        self.replays = 0  # moments built (not served from the cache): tests and /metrics

    def get(self, store: Any, config: FirmConfig, as_of_ns: int) -> AsOf:
        cut = cut_at(store, as_of_ns)
        with self._lock:
            found = self._entries.get(cut.position)
            if found is None:
                found = self._entries[cut.position] = AsOf(store, config, cut,
                                                            self._replays)
                self.replays += 1
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(cut.position)
            return found


_CACHES: weakref.WeakKeyDictionary[Any, AsOfCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(store: Any) -> AsOfCache:
    """The cache of one store object (gone with it)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = AsOfCache()
        return cache


def as_of(store: Any, config: FirmConfig, as_of_ns: int) -> AsOf:
    """The state of the store's log at ``as_of_ns`` (cached per store and position)."""
    return cache_for(store).get(store, config, as_of_ns)
