"""Strategies on the plugin API of ``domain.strategy``: pure, parameterised by typed configs
(frozen dataclasses) so that a backtester can sweep their parameters, and run unchanged by
the live runner (``commands.strategy_runner``) and the backtester (``commands.backtest``):
both build them with ``build``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.strategies.market_maker import MarketMaker, MarketMakerConfig
from domain.strategies.pairs import PairsConfig, PairsTrader
from domain.strategy import Strategy

KINDS = {"market_maker": (MarketMaker, MarketMakerConfig), "pairs": (PairsTrader, PairsConfig)}
# Config fields that hold exact decimals: given as text or numbers (a TOML file, --param
# k=v), never kept as floats.
DECIMALS = frozenset({"tick_size", "skew_ticks_per_unit", "hedge_ratio", "entry_z", "exit_z"})


def build(kind: str, strategy_id: str, params: dict[str, Any]) -> Strategy:
    """A strategy of ``kind`` with its config from plain values."""
    try:
        cls, config = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown strategy kind {kind!r}; one of {', '.join(KINDS)}") from None
    fields = {k: Decimal(str(v)) if k in DECIMALS else v for k, v in params.items()}
    strategy: Strategy = cls(strategy_id, config(**fields))
    return strategy


__all__ = ["KINDS", "MarketMaker", "MarketMakerConfig", "PairsConfig", "PairsTrader", "build"]
