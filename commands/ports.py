"""The engine's ports: what it needs from the outside, as interfaces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from domain.orders import Order


class StoreHalted(Exception):
    """The store refuses every further append from this engine; recovery cannot help.

    Unlike a failed write (a database outage, retried by rebuilding from the store), this
    is terminal for the engine process: it stops writing and reports why in ``/health``.
    """


class WriterFenced(StoreHalted):
    """Another engine has claimed the store (ARCHITECTURE rule 3: one writer per store)."""


class ChainBroken(StoreHalted):
    """The stored hash chain no longer verifies: appending would extend a tampered log."""


class Journal(Protocol):
    """Durable, ordered event store; ``append`` is one transaction.

    Every event's first two fields are its aggregate id (a UUID) and that aggregate's
    version: the store records them as the originator id and version.
    """

    def append(self, events: Sequence[Any]) -> int: ...

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]: ...

    def reset_head(self) -> None: ...


class Venue(Protocol):
    def match(self, order: Order, on_execution: Any) -> bool: ...

    def can_fill_completely(self, order: Order) -> bool: ...

    def remove(self, order: Order, price: Any = None) -> bool: ...

    def requote(self) -> None: ...

    def best_bid(self, symbol: str) -> Any: ...
