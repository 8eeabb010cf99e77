"""Read-your-writes for queries: wait until the views include every acknowledged event."""

from __future__ import annotations

from fastapi import Response

from infrastructure.bootstrap import System

WAIT_S = 2.0


def caught_up(system: System, response: Response) -> None:
    """Block (briefly) until projections reach what the engine has acknowledged.

    A client that got a 201 and then asks GET /orders/{id} must see its order. If the
    projections lag by more than WAIT_S, answer anyway and say how far behind they are.
    """
    target = system.engine.committed_position
    if system.projections.position < target:
        system.projections.notify()  # a runner backing off after an outage tries again now
    if not system.projections.wait_for(target, WAIT_S):
        lag = target - system.projections.position
        response.headers["X-Marketlog-Projection-Lag"] = str(lag)
