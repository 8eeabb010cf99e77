"""Firm configuration (TOML): defaults, per-account overrides and refusal of bad limits."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infrastructure.config import FirmConfig, load_config, parse_config

BASE = """
[firm]
credit_limit = "1000000"
restricted_symbols = ["RSTR"]

[firm.defaults]
version = 3
max_order_quantity = 500
max_order_notional = "50000"
price_collar_pct = "0.05"
credit_limit = "200000"
duplicate_window_ms = 250

[[instruments]]
symbol = "AAPL"
tick_size = "0.01"
reference_price = "190.00"

[[instruments]]
symbol = "NEWCO"
tick_size = "0.01"
lot_size = 100
"""


def parse(extra: str = "") -> FirmConfig:
    return parse_config(tomllib.loads(BASE + extra))


def accounts(cfg: FirmConfig) -> dict[str, Any]:
    return {a.account_id: a for a in cfg.new_accounts()}


# ------------------------------------------------------------------------ default file


def test_default_config_loads() -> None:
    cfg = load_config()
    assert cfg.firm.credit_limit == Decimal("40000000")
    assert cfg.firm.restricted_symbols == frozenset({"RSTR"})
    d = cfg.firm.defaults
    assert (d.max_order_quantity, d.max_order_notional, d.price_collar_pct, d.credit_limit) == (
        10_000, Decimal("1000000"), Decimal("0.10"), Decimal("20000000"))
    assert d.duplicate_window_ns == 1_000_000_000
    assert d.version == 1
    symbols = {i.symbol: i for i in cfg.instruments}
    assert {"AAPL", "MSFT", "SPY", "TSLA", "BRKA", "PENNY", "RSTR", "NEWCO"} <= set(symbols)
    assert symbols["NEWCO"].reference_price is None
    assert symbols["PENNY"].lot_size == 100
    assert symbols["PENNY"].tick_size == Decimal("0.0001")
    accs = accounts(cfg)
    assert set(accs) == {"ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA"}
    assert accs["ACC-GAMMA"].restricted_symbols == frozenset({"TSLA"})
    assert accs["ACC-GAMMA"].limits.max_order_quantity == 5_000
    assert accs["ACC-ALPHA"].limits == d


def test_default_config_every_value_is_decimal_exact() -> None:
    cfg = load_config()
    for acc in cfg.new_accounts():
        for value in acc.limits.record.values():
            assert len(value) < 20, f"{acc.account_id}: suspicious value {value}"


def test_load_config_from_path(tmp_path: Path) -> None:
    path = tmp_path / "firm.toml"
    path.write_text(BASE + '[[accounts]]\naccount_id = "X"\n')
    cfg = load_config(path)
    assert cfg.firm.defaults.version == 3
    assert list(accounts(cfg)) == ["X"]


def test_new_accounts_are_fresh_objects() -> None:
    cfg = parse('[[accounts]]\naccount_id = "X"\n')
    one, two = cfg.new_accounts()[0], cfg.new_accounts()[0]
    assert one is not two
    one.exposure.enter("buy", Decimal(1))
    assert two.exposure.value("gross") == 0


# ----------------------------------------------------------------------- overrides


def test_account_without_overrides_uses_firm_defaults() -> None:
    cfg = parse('[[accounts]]\naccount_id = "X"\n')
    acc = accounts(cfg)["X"]
    assert acc.limits == cfg.firm.defaults
    assert acc.cash == 0
    assert acc.restricted_symbols == frozenset()


def test_per_account_overrides_fall_back_to_firm_defaults() -> None:
    cfg = parse(
        '[[accounts]]\naccount_id = "X"\ncash = "1000.50"\ncredit_limit = "7500"\n'
        'duplicate_window_ms = 5\nrestricted_symbols = ["AAPL"]\n'
    )
    lim = accounts(cfg)["X"].limits
    assert lim.credit_limit == Decimal("7500")
    assert lim.duplicate_window_ns == 5_000_000
    # not overridden: the firm's
    assert lim.max_order_quantity == 500
    assert lim.max_order_notional == Decimal("50000")
    assert lim.price_collar_pct == Decimal("0.05")
    assert lim.version == 3
    acc = accounts(cfg)["X"]
    assert acc.cash == Decimal("1000.50")
    assert acc.restricted_symbols == frozenset({"AAPL"})


def test_firm_defaults_without_window_use_one_second() -> None:
    cfg = parse_config(tomllib.loads(BASE.replace("duplicate_window_ms = 250\n", "")))
    assert cfg.firm.defaults.duplicate_window_ns == 1_000_000_000


def test_instrument_lot_size_defaults_to_one_and_missing_reference_is_none() -> None:
    cfg = parse()
    by = {i.symbol: i for i in cfg.instruments}
    assert by["AAPL"].lot_size == 1
    assert by["AAPL"].reference_price == Decimal("190.00")
    assert by["NEWCO"].reference_price is None


# ----------------------------------------------------------------------- rejection


def test_duplicate_account_ids_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate account_id"):
        parse('[[accounts]]\naccount_id = "X"\n[[accounts]]\naccount_id = "X"\n')


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('max_order_quantity = 0', "order size limits must be > 0"),
        ('max_order_notional = "-1"', "order size limits must be > 0"),
        ('price_collar_pct = "10"', "price_collar_pct must be a fraction"),
        ('price_collar_pct = "0"', "price_collar_pct must be a fraction"),
        ('credit_limit = "-1"', "credit_limit"),
        ('duplicate_window_ms = -1', "duplicate_window"),
    ],
)
def test_invalid_account_limits_rejected_with_clear_message(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(f'[[accounts]]\naccount_id = "X"\n{override}\n')


def test_invalid_firm_default_rejected() -> None:
    with pytest.raises(ValueError, match="price_collar_pct"):
        parse_config(tomllib.loads(BASE.replace('price_collar_pct = "0.05"',
                                                'price_collar_pct = "1.5"')))


@pytest.mark.parametrize(
    ("instrument", "message"),
    [('tick_size = "0"', "tick_size"), ('tick_size = "0.01"\nlot_size = 0', "lot_size"),
     ('tick_size = "0.01"\nreference_price = "-1"', "reference_price")],
)
def test_invalid_instrument_rejected(instrument: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(f'[[instruments]]\nsymbol = "BAD"\n{instrument}\n')


# ------------------------------------------------------------- bugs (see report)


def test_error_names_the_offending_account() -> None:
    """BUG: with 200 accounts, 'credit_limit and duplicate_window must be >= 0' is unusable."""
    with pytest.raises(ValueError, match="ACC-BROKEN"):
        parse('[[accounts]]\naccount_id = "ACC-BROKEN"\ncredit_limit = "-1"\n')


def test_missing_firm_default_is_a_clear_error_not_a_type_error() -> None:
    """BUG: a missing [firm.defaults] key surfaces as TypeError comparing None with int."""
    doc = tomllib.loads(BASE.replace("max_order_quantity = 500\n", ""))
    with pytest.raises(ValueError, match="max_order_quantity"):
        parse_config(doc)


def test_unparseable_number_is_a_clear_error() -> None:
    """BUG: 'abc' as a money value raises decimal.InvalidOperation with no field name."""
    with pytest.raises(ValueError, match="max_order_notional"):
        parse('[[accounts]]\naccount_id = "X"\nmax_order_notional = "abc"\n')


def test_unknown_account_key_rejected() -> None:
    """BUG: a typo like ``credit_limt`` is silently ignored, so the account gets the
    firm's (larger) default credit limit instead of the intended one (15c3-5(c)(1)(i))."""
    with pytest.raises(ValueError, match="credit_limt"):
        parse('[[accounts]]\naccount_id = "X"\ncredit_limt = "1000"\n')


def test_restricted_symbols_given_as_a_string_rejected() -> None:
    """BUG: ``restricted_symbols = "TSLA"`` becomes {"T", "S", "L", "A"}: TSLA is not
    restricted at all (15c3-5(c)(2)(ii))."""
    with pytest.raises((ValueError, TypeError)):
        accounts(parse('[[accounts]]\naccount_id = "X"\nrestricted_symbols = "TSLA"\n'))


def test_toml_float_is_not_silently_turned_into_a_binary_fraction() -> None:
    """BUG: ``price_collar_pct = 0.1`` (a TOML float) becomes
    Decimal('0.1000000000000000055511151231257827021181583404541015625'), recorded in
    every acceptance. Either refuse floats or convert through str."""
    try:
        cfg = parse_config(tomllib.loads(BASE.replace('price_collar_pct = "0.05"',
                                                      "price_collar_pct = 0.1")))
    except ValueError:
        return  # refusing floats with a clear error is an acceptable fix
    assert cfg.firm.defaults.price_collar_pct == Decimal("0.1")
    assert cfg.firm.defaults.record["price_collar_pct"] == "0.1"
