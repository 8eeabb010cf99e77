"""Strategies on the plugin API of ``domain.strategy``: pure, parameterised by typed configs
(frozen dataclasses) so that a backtester can sweep their parameters, and run unchanged by
the live runner (``commands.strategy_runner``)."""

from domain.strategies.market_maker import MarketMaker, MarketMakerConfig
from domain.strategies.pairs import PairsConfig, PairsTrader

__all__ = ["MarketMaker", "MarketMakerConfig", "PairsConfig", "PairsTrader"]
