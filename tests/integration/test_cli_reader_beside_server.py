"""A command-line reader (``marketlog cat``, ``lineage``, ``export``, ``audit``) beside a
serving engine whose projector writes the same read models: when the server's projector
moves the positions between the reader opening them and catching up, the reader starts
again from there instead of failing (found by the fresh-clone run: ``marketlog cat``
failed with ConcurrentProjectionError beside the API's projector on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import infrastructure.bootstrap as bootstrap_module
from commands.models import SubmitOrder
from infrastructure.bootstrap import System, bootstrap, caught_up_read_side
from infrastructure.settings import Settings
from projections.runner import ConcurrentProjectionError


@pytest.fixture
def system(backend: Settings) -> Iterator[System]:
    system = bootstrap(backend, start=False)
    try:
        yield system
    finally:
        system.close()


def _orders(system: System, n: int) -> None:
    system.engine.execute([SubmitOrder(
        client_order_id=f"beside-{i}", account_id="ACC-ALPHA", symbol="AAPL", side="buy",
        quantity=10, order_type="limit", limit_price="189.00", time_in_force="day",
        actor="tester", source="api") for i in range(n)])


def test_a_reader_whose_positions_move_under_it_starts_again(
        system: System, backend: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _orders(system, 5)
    opened: list[Any] = []
    real_open = bootstrap_module.open_read_side

    def open_racing_the_server(settings: Settings) -> Any:
        read = real_open(settings)
        if not opened:
            # The race, at its moment: the server's projector commits a batch between this
            # reader's reading the positions and writing its own (the compare-and-set of
            # projections/runner.py then refuses the reader's batch).
            def lost_the_race() -> int:
                system.projections.catch_up()
                raise ConcurrentProjectionError("position of view 'orders' moved")

            read.projections.catch_up = lost_the_race
        opened.append(read)
        return read

    monkeypatch.setattr(bootstrap_module, "open_read_side", open_racing_the_server)
    read = caught_up_read_side(backend)
    try:
        assert len(opened) == 2  # the first read side was given up, the second caught up
        assert read is opened[1]
        assert read.projections.position == system.store.head_position > 0
    finally:
        read.close()
    assert opened[0].store is not read.store


def test_without_a_race_one_read_side_is_enough(system: System, backend: Settings) -> None:
    _orders(system, 3)
    read = caught_up_read_side(backend)
    try:
        assert read.projections.position == system.store.head_position
    finally:
        read.close()
