"""Read-model tables (SQLAlchemy Core) and the exact decimal type they store money in."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

ID = sa.String(36)  # str(UUID)
NAME = sa.String(64)  # enum values, control names, actors


class ExactDecimal(sa.TypeDecorator[Decimal]):
    """Money and prices, exact on both dialects, read back as ``Decimal``.

    PostgreSQL: NUMERIC without precision keeps every digit. SQLite: TEXT, because SQLite's
    NUMERIC affinity stores REAL (a binary float) whenever the value fits, and money must never
    pass through a float.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


metadata = sa.MetaData()

orders_view = sa.Table(
    "orders_view",
    metadata,
    sa.Column("order_id", ID, primary_key=True),
    sa.Column("client_order_id", sa.String, nullable=False),
    sa.Column("account_id", NAME, nullable=False, index=True),
    sa.Column("symbol", NAME, nullable=False, index=True),
    sa.Column("side", NAME, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("order_type", NAME, nullable=False),
    sa.Column("limit_price", ExactDecimal, nullable=True),  # market orders have none
    sa.Column("time_in_force", NAME, nullable=False),
    sa.Column("status", NAME, nullable=False, index=True),
    sa.Column("filled_quantity", sa.BigInteger, nullable=False),
    # Sum of price * quantity over fills; the average fill price is derived from it on read
    # so that no rounded average is ever accumulated.
    sa.Column("filled_notional", ExactDecimal, nullable=False),
    # 15c3-5: a rejection names the control, its threshold and what was observed.
    sa.Column("reject_control", NAME, nullable=True),
    sa.Column("reject_threshold", sa.String, nullable=True),
    sa.Column("reject_observed", sa.String, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
    # Keyset pagination of list_orders walks (created_ns, order_id).
    sa.Index("ix_orders_view_created", "created_ns", "order_id"),
)

positions_view = sa.Table(
    "positions_view",
    metadata,
    sa.Column("account_id", NAME, primary_key=True),
    sa.Column("symbol", NAME, primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),  # negative = short
    sa.Column("average_price", ExactDecimal, nullable=False),  # 0 when flat
    sa.Column("realized_pnl", ExactDecimal, nullable=False),
)

audit_trail = sa.Table(
    "audit_trail",
    metadata,
    # The notification id in the store's log: the total order auditors replay in.
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_type", NAME, nullable=False),
    sa.Column("aggregate_id", ID, nullable=False),
    sa.Column("aggregate_version", sa.Integer, nullable=False),
    sa.Column("ts_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("actor", NAME, nullable=False),
    sa.Column("source", NAME, nullable=False),
    # Empty for events of no account or order (trading days, the engine's own records).
    sa.Column("account_id", NAME, nullable=True, index=True),
    sa.Column("order_id", ID, nullable=True, index=True),
    # The stored body as recorded (with schema and prev_hash), so the trail is self-contained.
    sa.Column("payload", sa.Text, nullable=False),
)

projection_positions = sa.Table(
    "projection_positions",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    # Last log position applied, written in the same transaction as the view (rule 6).
    sa.Column("position", sa.BigInteger, nullable=False),
)

# Kafka-fed projections (ARCHITECTURE rule 6 on a partitioned log): per consumer group and
# partition, the next offset to read and the last log position applied from it, written in
# the same transaction as the views. The offset says where to resume; the position is how a
# record the relay published twice (a crash between publishing and its checkpoint) is
# recognised and skipped, since the re-published copy has a new offset but the same position.
projection_offsets = sa.Table(
    "projection_offsets",
    metadata,
    sa.Column("consumer", sa.String(255), primary_key=True),  # a Kafka group id
    sa.Column("topic", sa.String(249), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("last_position", sa.BigInteger, nullable=False),
)


def select_by_keys(
    conn: sa.Connection, table: sa.Table, keys: list[Any], chunk: int = 2000
) -> list[sa.RowMapping]:
    """Rows of ``table`` whose primary key is in ``keys`` (scalars or tuples), in chunks.

    Chunked because SQLite and psycopg cap the number of bind parameters per statement.
    """
    pk = list(table.primary_key.columns)
    key_expr = pk[0] if len(pk) == 1 else sa.tuple_(*pk)
    rows: list[sa.RowMapping] = []
    for start in range(0, len(keys), chunk):
        stmt = sa.select(table).where(key_expr.in_(keys[start : start + chunk]))
        rows.extend(conn.execute(stmt).mappings())
    return rows


# ------------------------------------------------------------------ driver-level writes
#
# The views write thousands of rows per batch. SQLAlchemy Core's executemany processes
# every row's parameters through the compiled statement (a dict per row, a bind processor
# per value), which cost about half of a rebuild's time; these helpers hand positional
# tuples straight to the driver instead (SQLite: executemany; PostgreSQL: COPY and
# UPDATE ... FROM unnest, see insert_rows/update_rows). The values are what the Core
# path would have bound: ``decimal_binder`` does ExactDecimal's conversion (text on
# SQLite, the Decimal itself on PostgreSQL); every other column type binds as it is.


def _placeholder(conn: sa.Connection) -> str:
    return "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"


def decimal_binder(conn: sa.Connection) -> Any:
    """ExactDecimal's bind conversion for this connection's dialect (None stays None)."""
    if conn.dialect.name == "postgresql":
        return lambda value: value
    return lambda value: None if value is None else str(value)


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def insert_sql(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> str:
    mark = _placeholder(conn)
    return (f"INSERT INTO {_quote(conn, table.name)} "
            f"({', '.join(_quote(conn, c) for c in columns)}) "
            f"VALUES ({', '.join(mark for _ in columns)})")


def update_sql(conn: sa.Connection, table: sa.Table, columns: Sequence[str],
               keys: Sequence[str]) -> str:
    """UPDATE setting ``columns`` where ``keys`` equal: parameters are columns then keys."""
    mark = _placeholder(conn)
    return (f"UPDATE {_quote(conn, table.name)} SET "
            f"{', '.join(f'{_quote(conn, c)} = {mark}' for c in columns)} WHERE "
            f"{' AND '.join(f'{_quote(conn, k)} = {mark}' for k in keys)}")


def executemany(conn: sa.Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """One driver-level executemany of positional rows, in the connection's transaction."""
    if rows:
        conn.exec_driver_sql(statement, rows)


def _array_types(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> list[str]:
    return [f"{table.c[c].type.compile(dialect=conn.dialect)}[]" for c in columns]


def insert_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str],
                rows: list[tuple[Any, ...]]) -> None:
    """INSERT positional rows (values in ``columns`` order, already bound: see
    ``decimal_binder``). SQLite: one executemany. PostgreSQL: COPY on the connection's own
    transaction (psycopg's executemany costs a pipelined round of protocol messages per
    row; COPY streams the rows, formatted by psycopg's C adapters)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        executemany(conn, insert_sql(conn, table, columns), rows)
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = (f"COPY {_quote(conn, table.name)} "
                 f"({', '.join(_quote(conn, c) for c in columns)}) FROM STDIN")
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        write = copy.write_row
        for row in rows:
            write(row)


def update_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str],
                keys: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """UPDATE ``columns`` of the rows whose ``keys`` equal: each row is the new values then
    the key values (as ``update_sql``); every key at most once. PostgreSQL: one
    ``UPDATE ... FROM unnest(...)`` statement (see ``insert_rows``)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        executemany(conn, update_sql(conn, table, columns, keys), rows)
        return
    names = [*columns, *keys]
    alias = [f"c{i}" for i in range(len(names))]
    arrays = ", ".join(f"%b::{t}" for t in _array_types(conn, table, names))
    target = _quote(conn, table.name)
    sets = ", ".join(f"{_quote(conn, c)} = v.{a}" for c, a in zip(columns, alias, strict=False))
    where = " AND ".join(f"{target}.{_quote(conn, k)} = v.{a}"
                         for k, a in zip(keys, alias[len(columns):], strict=True))
    conn.exec_driver_sql(
        f"UPDATE {target} SET {sets} FROM unnest({arrays}) AS v({', '.join(alias)}) "
        f"WHERE {where}",
        tuple(list(column) for column in zip(*rows, strict=True)))


def decimal_columns(table: sa.Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, ExactDecimal))


def fetch_by_keys(
    conn: sa.Connection, table: sa.Table, keys: list[Any], chunk: int = 2000
) -> list[dict[str, Any]]:
    """``select_by_keys`` at the driver level, as plain dicts: the same values (ExactDecimal
    columns read back as ``Decimal``, everything else as the driver returns it)."""
    pk = [c.name for c in table.primary_key.columns]
    names = [c.name for c in table.columns]
    decimals = [i for i, c in enumerate(names) if c in decimal_columns(table)]
    mark = _placeholder(conn)
    key_expr = _quote(conn, pk[0]) if len(pk) == 1 else \
        f"({', '.join(_quote(conn, k) for k in pk)})"
    head = (f"SELECT {', '.join(_quote(conn, c) for c in names)} "
            f"FROM {_quote(conn, table.name)} WHERE {key_expr} ")
    if conn.dialect.name == "postgresql" and len(pk) == 1:
        # One statement, the keys as one array parameter: no chunks, and no statement of
        # thousands of parameters for the server to parse.
        (array_type,) = _array_types(conn, table, pk)
        results = [conn.exec_driver_sql(head + f"= ANY(%b::{array_type})", (list(keys),)).all()]
    else:
        one = mark if len(pk) == 1 else f"({', '.join(mark for _ in pk)})"
        results = []
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            params = part if len(pk) == 1 else [v for key in part for v in key]
            results.append(conn.exec_driver_sql(
                head + f"IN ({', '.join(one for _ in part)})", tuple(params)).all())
    out: list[dict[str, Any]] = []
    for result in results:
        for row in result:
            values = list(row)
            for i in decimals:
                if values[i] is not None:
                    values[i] = Decimal(values[i])
            out.append(dict(zip(names, values, strict=True)))
    return out


# ------------------------------------------------------------------ 15c3-5 control statistics
#
# Maintained by projections/controls_stats.py; read by projections/report_15c3_5.py. Every
# figure of the daily report comes from these rows (never a scan of the journal at report
# time). Each row is a sum, a count or a maximum with a deterministic tie-break, so the
# store-fed runner (log order) and the Kafka projector (order only within an account's
# partition) reach the same rows.

DATE = sa.String(10)  # ISO trading date; "" for a rejection outside any trading day

control_days = sa.Table(
    "control_days",
    metadata,
    sa.Column("trading_date", DATE, primary_key=True),
    sa.Column("opened_ns", sa.BigInteger, nullable=True),
    sa.Column("opened_position", sa.BigInteger, nullable=True),
    sa.Column("closed_ns", sa.BigInteger, nullable=True),
    sa.Column("closed_position", sa.BigInteger, nullable=True),
    sa.Column("exposure_mode", NAME, nullable=True),
    sa.Column("accepted", sa.BigInteger, nullable=False),
    sa.Column("rejected", sa.BigInteger, nullable=False),
    # Post-trade completeness: fills delivered, fills whose cumulative quantity does not
    # follow the order's previous one (a missing execution report), and the longest time
    # from the decision that sent an order to the venue to its taker fill's record.
    sa.Column("fills", sa.BigInteger, nullable=False),
    sa.Column("fill_quantity", sa.BigInteger, nullable=False),
    sa.Column("fill_gaps", sa.BigInteger, nullable=False),
    sa.Column("taker_fills", sa.BigInteger, nullable=False),
    sa.Column("max_fill_delay_ns", sa.BigInteger, nullable=True),
    # The day's highest firm-wide exposure sample (as its highest bucket, kept here so the
    # report reads one row rather than every bucket).
    sa.Column("firm_peak_exposure", ExactDecimal, nullable=True),
    sa.Column("firm_peak_ns", sa.BigInteger, nullable=True),
    sa.Column("firm_peak_position", sa.BigInteger, nullable=True),
)

control_day_accounts = sa.Table(
    "control_day_accounts",
    metadata,
    sa.Column("trading_date", DATE, primary_key=True),
    sa.Column("account_id", NAME, primary_key=True),
    sa.Column("accepted", sa.BigInteger, nullable=False),
    sa.Column("rejected", sa.BigInteger, nullable=False),
    # Acceptances that left the account's exposure above the credit limit they recorded.
    sa.Column("breaches", sa.BigInteger, nullable=False),
    sa.Column("credit_limit", ExactDecimal, nullable=True),  # the last one a decision recorded
    # 15c3-5(c)(1)(i): notional entered by side (open leaves at their exposure price plus
    # fills), as domain.accounts.Exposure keeps it: the end-of-day exposure in either mode.
    sa.Column("buy_entered", ExactDecimal, nullable=False),
    sa.Column("sell_entered", ExactDecimal, nullable=False),
    sa.Column("buy_filled", ExactDecimal, nullable=False),
    sa.Column("sell_filled", ExactDecimal, nullable=False),
    sa.Column("fills", sa.BigInteger, nullable=False),
    # The day's highest exposure sample and the credit limit its decision recorded.
    sa.Column("peak_exposure", ExactDecimal, nullable=True),
    sa.Column("peak_limit", ExactDecimal, nullable=True),
    sa.Column("peak_ns", sa.BigInteger, nullable=True),
    sa.Column("peak_position", sa.BigInteger, nullable=True),
)

# Intraday limit use: the highest exposure sampled (at each acceptance and replace request)
# per five-minute bucket, per account and firm-wide (scope "firm"), with the limit the
# sampled decision recorded. The peak of the day is the highest bucket.
control_exposure_buckets = sa.Table(
    "control_exposure_buckets",
    metadata,
    sa.Column("trading_date", DATE, primary_key=True),
    sa.Column("scope", NAME, primary_key=True),  # "firm" or "account:<id>"
    sa.Column("bucket_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("exposure", ExactDecimal, nullable=False),
    sa.Column("credit_limit", ExactDecimal, nullable=True),  # None: firm (not in the event)
    sa.Column("at_ns", sa.BigInteger, nullable=False),
    sa.Column("at_position", sa.BigInteger, nullable=False),  # ties: the earliest sample
)

control_rejections = sa.Table(
    "control_rejections",
    metadata,
    sa.Column("trading_date", DATE, primary_key=True),
    sa.Column("control", NAME, primary_key=True),
    sa.Column("account_id", NAME, primary_key=True),
    sa.Column("orders", sa.BigInteger, nullable=False),
)

# Coverage (15c3-5: every order through every applicable control): per control, the orders
# it applied to (an accepted order: every new-order control; one rejected by control k: the
# controls before k in table order and k) and the orders whose decision records it ran.
control_coverage = sa.Table(
    "control_coverage",
    metadata,
    sa.Column("trading_date", DATE, primary_key=True),
    sa.Column("control", NAME, primary_key=True),
    sa.Column("applicable", sa.BigInteger, nullable=False),
    sa.Column("checked", sa.BigInteger, nullable=False),
    sa.Column("rejected", sa.BigInteger, nullable=False),
)

# What the exposure of an order still open needs (OrderFilled and OrderCanceled do not carry
# the price the order is valued at); a row leaves when its order finishes.
control_open_orders = sa.Table(
    "control_open_orders",
    metadata,
    sa.Column("order_id", ID, primary_key=True),
    sa.Column("trading_date", DATE, nullable=False),
    sa.Column("account_id", NAME, nullable=False),
    sa.Column("side", NAME, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("filled_quantity", sa.BigInteger, nullable=False),
    sa.Column("exposure_price", ExactDecimal, nullable=False),
    sa.Column("reserved", ExactDecimal, nullable=False),  # a pending replace's increase
    sa.Column("released_ns", sa.BigInteger, nullable=False),  # sent to the venue (or replaced)
)

# Governance facts the report lists (limit changes, kill switches, entitlements, users,
# suspensions, certifications) and clock exceptions (item 8), one row per event, selected by
# time at report time.
control_governance = sa.Table(
    "control_governance",
    metadata,
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_type", NAME, nullable=False),
    sa.Column("ts_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("actor", NAME, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the stored body, as recorded
)
