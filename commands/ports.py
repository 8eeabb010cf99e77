"""The engine's ports: what it needs from the outside, as interfaces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from domain.orders import Order


class Journal(Protocol):
    """Durable, ordered event store; ``append`` is one transaction."""

    def append(self, events: Sequence[Any]) -> int: ...

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]: ...

    def reset_head(self) -> None: ...


class Venue(Protocol):
    def match(self, order: Order, on_execution: Any) -> bool: ...

    def can_fill_completely(self, order: Order) -> bool: ...

    def remove(self, order: Order, price: Any = None) -> bool: ...

    def requote(self) -> None: ...
