"""``marketlog strategies list``: the paper-trading desk's strategies. Live status comes from
the serving process (``GET /strategies``: the strategies run in it); without a server the
configured strategies are listed as such. Registered at the end of api/cli.py."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer

strategies_app = typer.Typer(help="Strategies of the paper-trading desk (issue 9).",
                             no_args_is_help=True)


@strategies_app.command("list")
def list_strategies(
    url: Annotated[str | None, typer.Option(help="The server; default http://HOST:PORT of "
                                                 "the settings.")] = None,
    token: Annotated[str | None, typer.Option(envvar="MARKETLOG_TOKEN",
                                              help="Bearer token of the caller.")] = None,
) -> None:
    """Each strategy: id, kind, status, run, orders sent, fills, positions, errors."""
    from api.cli import _console, _settings, _table

    settings = _settings()
    base = url or f"http://{settings.host}:{settings.port}"
    rows: list[dict[str, Any]]
    source = base
    try:
        response = httpx.get(f"{base}/strategies", timeout=5.0,
                             headers={"Authorization": f"Bearer {token}"} if token else {})
        response.raise_for_status()
        rows = response.json()
    except httpx.HTTPError as exc:
        source = f"configuration (no server at {base}: {type(exc).__name__})"
        rows = [{"id": s.id, "kind": s.kind, "status": "start with server" if s.start
                 else "configured", "account_id": s.account, "orders_sent": 0, "fills": 0,
                 "positions": {}, "errors": []} for s in settings.strategies]
    table = _table(f"Strategies, from {source}")
    for column in ("id", "kind", "status", "run", "account", "orders", "fills", "positions",
                   "errors"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["id"], r["kind"], r["status"], str(r.get("run", "")), r["account_id"],
                      str(r["orders_sent"]), str(r["fills"]),
                      " ".join(f"{k}:{v}" for k, v in r["positions"].items()),
                      "; ".join(r["errors"]))
    _console().print(table)
