"""Loads the firm's limits, instruments and accounts from a TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from domain.accounts import Account
from domain.instruments import Instrument
from domain.limits import FirmLimits, RiskLimits


@dataclass(frozen=True)
class FirmConfig:
    firm: FirmLimits
    instruments: tuple[Instrument, ...]
    account_specs: tuple[dict[str, Any], ...]

    def new_accounts(self) -> list[Account]:
        """Fresh account objects (each engine owns its own; state is rebuilt from the log)."""
        return [_account(spec, self.firm.defaults) for spec in self.account_specs]


def _limits(values: dict[str, Any], base: RiskLimits | None = None) -> RiskLimits:
    def pick(name: str, convert: Any, default: Any) -> Any:
        return convert(values[name]) if name in values else default

    window_ns = (
        int(values["duplicate_window_ms"]) * 1_000_000
        if "duplicate_window_ms" in values
        else (base.duplicate_window_ns if base else 1_000_000_000)
    )
    return RiskLimits(
        max_order_quantity=pick("max_order_quantity", int, base and base.max_order_quantity),
        max_order_notional=pick("max_order_notional", Decimal, base and base.max_order_notional),
        price_collar_pct=pick("price_collar_pct", Decimal, base and base.price_collar_pct),
        credit_limit=pick("credit_limit", Decimal, base and base.credit_limit),
        duplicate_window_ns=window_ns,
        version=pick("version", int, base.version if base else 1),
    )


def _account(spec: dict[str, Any], defaults: RiskLimits) -> Account:
    return Account(
        account_id=spec["account_id"],
        limits=_limits(spec, defaults),
        cash=Decimal(spec.get("cash", "0")),
        restricted_symbols=frozenset(spec.get("restricted_symbols", ())),
    )


def parse_config(doc: dict[str, Any]) -> FirmConfig:
    firm = doc["firm"]
    defaults = _limits(firm["defaults"])
    instruments = tuple(
        Instrument(
            symbol=i["symbol"],
            tick_size=Decimal(i["tick_size"]),
            lot_size=int(i.get("lot_size", 1)),
            reference_price=Decimal(i["reference_price"]) if "reference_price" in i else None,
        )
        for i in doc.get("instruments", ())
    )
    specs = tuple(doc.get("accounts", ()))
    ids = [s["account_id"] for s in specs]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate account_id in configuration")
    for spec in specs:
        _account(spec, defaults)  # validate now, not at the first order
    return FirmConfig(
        firm=FirmLimits(
            credit_limit=Decimal(firm["credit_limit"]),
            restricted_symbols=frozenset(firm.get("restricted_symbols", ())),
            defaults=defaults,
        ),
        instruments=instruments,
        account_specs=specs,
    )


def load_config(path: Path | None = None) -> FirmConfig:
    if path is None:
        text = resources.files("infrastructure").joinpath("config/default.toml").read_text()
    else:
        text = Path(path).read_text()
    return parse_config(tomllib.loads(text))
