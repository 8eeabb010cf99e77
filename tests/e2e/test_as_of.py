"""As-of replay end to end (issue 8, item 3): ``?as_of=`` on the read endpoints and
``marketlog replay --until``, on SQLite and on PostgreSQL.

A scripted session trades at distinct times; at each moment between its steps the API's
answer as of then is compared with figures this test computes ITSELF from the store's
events up to that moment (read with the store's own API and folded here: positions by
average cost, open orders by their events, gross exposure by entered and filled notional),
never with the code under test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli_app
from commands.models import TakeSnapshot
from domain import book_snapshot
from domain.events import OrderAccepted, OrderCanceled, OrderFilled, TradingDayOpened
from infrastructure import as_of as as_of_replay
from infrastructure.settings import Settings
from projections import queries
from tests.auth import login, user_headers

ENDPOINTS = ("/positions", "/orders", "/accounts", "/limits")
PRICE_QUANTUM = Decimal("1e-8")


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")  # a trader of ACC-ALPHA, -BETA, -GAMMA and -DELTA
        yield c


def system_of(client: TestClient) -> Any:
    return client.app.state.system  # type: ignore[attr-defined]


def place(client: TestClient, user: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"client_order_id": f"asof-{uuid.uuid4().hex[:12]}", "account_id": "ACC-ALPHA",
            "symbol": "AAPL", "side": "buy", "quantity": 10, "order_type": "limit",
            "limit_price": "190.00", "time_in_force": "day", **fields}
    r = client.post("/orders", json=body, headers=user_headers(client, user) if user else None)
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()
    assert order["status"] != "rejected", order
    return order


def act(client: TestClient, user: str, path: str, **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body, headers=user_headers(client, user))
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def moment() -> int:
    """A moment after everything recorded so far and before anything recorded next: the
    clock read, rounded up to a whole microsecond (ISO 8601 carries microseconds), then a
    pause so the next event is stamped later."""
    now = -(-time.time_ns() // 1_000) * 1_000
    time.sleep(0.003)
    return now


def iso(ts_ns: int) -> str:
    return as_of_replay.iso_ns(ts_ns)


def get_as_of(client: TestClient, path: str, when: int | str, user: str = "abe",
              **params: Any) -> tuple[Any, int]:
    """(body, X-As-Of-Position) of ``path`` as of ``when``, read by ``user``."""
    r = client.get(path, params={"as_of": when, **params}, headers=user_headers(client, user))
    assert r.status_code == 200, r.text
    return r.json(), int(r.headers["X-As-Of-Position"])


# ------------------------------------------------------------- the journal, read by the test


def journal(client: TestClient) -> list[tuple[int, Any]]:
    """Every event of the store, through the store's read API."""
    return list(system_of(client).store.read())


def expected_positions(events: list[tuple[int, Any]], until_ns: int) -> dict[tuple[str, str],
                                                                            tuple[int, Decimal,
                                                                                  Decimal]]:
    """(quantity, average price, realized P&L) per (account, symbol), average cost, from the
    fills stamped at or before ``until_ns``; written here independently of the views."""
    held: dict[tuple[str, str], tuple[int, Decimal, Decimal]] = {}
    for _, e in events:
        if not isinstance(e, OrderFilled) or e.ts_ns > until_ns:
            continue
        key = (e.account_id, e.symbol)
        quantity, average, pnl = held.get(key, (0, Decimal(0), Decimal(0)))
        delta = e.fill_quantity if e.side == "buy" else -e.fill_quantity
        if quantity == 0 or (quantity > 0) == (delta > 0):
            average = (average * abs(quantity) + e.fill_price * abs(delta)) / abs(
                quantity + delta)
        else:
            closed = min(abs(delta), abs(quantity))
            pnl += (e.fill_price - average) * closed * (1 if quantity > 0 else -1)
            if quantity + delta == 0:
                average = Decimal(0)
            elif (quantity + delta > 0) != (quantity > 0):
                average = e.fill_price
        held[key] = (quantity + delta, average, pnl)
    # The API's prices have at most 8 decimal places (domain.values.price_text).
    return {k: (q, a.quantize(PRICE_QUANTUM), p.quantize(PRICE_QUANTUM))
            for k, (q, a, p) in held.items()}


def as_tuples(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, Decimal, Decimal]]:
    return {(r["account_id"], r["symbol"]): (r["quantity"], Decimal(r["average_price"]),
                                             Decimal(r["realized_pnl"])) for r in rows}


def expected_open_orders(events: list[tuple[int, Any]], until_ns: int) -> dict[str, int]:
    """order id -> leaves quantity of the orders open at ``until_ns``."""
    leaves: dict[str, int] = {}
    for _, e in events:
        if e.ts_ns > until_ns:
            break
        if isinstance(e, OrderAccepted):
            leaves[str(e.order_id)] = e.quantity
        elif isinstance(e, OrderFilled):
            leaves[str(e.order_id)] = e.leaves_quantity
        elif isinstance(e, OrderCanceled):
            leaves[str(e.order_id)] = 0
    return {k: v for k, v in leaves.items() if v > 0}


def expected_gross_exposure(events: list[tuple[int, Any]], until_ns: int) -> dict[str, Decimal]:
    """15c3-5(c)(1)(i) gross exposure per account since the day's open: every order entered
    at its exposure price, fills at their own price, cancels taking their rest out."""
    exposure: dict[str, Decimal] = {}
    price_of: dict[str, Decimal] = {}
    for _, e in events:
        if e.ts_ns > until_ns:
            break
        if isinstance(e, TradingDayOpened):
            exposure = {}  # the test's orders are all DAY orders: nothing carries over
        elif isinstance(e, OrderAccepted):
            price_of[str(e.order_id)] = e.exposure_price
            exposure[e.account_id] = exposure.get(e.account_id, Decimal(0)) + \
                e.exposure_price * e.quantity
        elif isinstance(e, OrderFilled):
            exposure[e.account_id] += (e.fill_price - price_of[str(e.order_id)]) * \
                e.fill_quantity
        elif isinstance(e, OrderCanceled):
            exposure[e.account_id] -= price_of[str(e.order_id)] * e.canceled_quantity
    return exposure


# ------------------------------------------------------------- the scripted session


@dataclass
class Session:
    moments: dict[str, int]
    orders: dict[str, dict[str, Any]]
    change_id: str
    limits_version: int


def trade_a_session(client: TestClient) -> Session:
    """Orders, fills, a snapshot, a limit change and a cancel, each step at its own time."""
    t: dict[str, int] = {"start": moment()}
    o: dict[str, dict[str, Any]] = {}
    # BETA offers 100 @ 190; ALPHA lifts 60 of it: BETA's order stays open for 40.
    o["beta_offer"] = place(client, "lara", account_id="ACC-BETA", side="sell", quantity=100,
                            limit_price="190.00")
    o["alpha_buy"] = place(client, "maria", quantity=60, limit_price="190.50")
    assert o["alpha_buy"]["filled_quantity"] == 60
    t["first_fill"] = moment()
    # ALPHA offers 40 @ 195 (rests); DELTA takes BETA's last 40 @ 190.
    o["alpha_offer"] = place(client, "maria", side="sell", quantity=40, limit_price="195.00")
    o["delta_buy"] = place(client, account_id="ACC-DELTA", quantity=40, limit_price="191.00")
    assert o["delta_buy"]["filled_quantity"] == 40
    t["beta_done"] = moment()
    # A snapshot: answers after it start from it, not from the beginning of the log.
    outcome = system_of(client).engine.submit(
        TakeSnapshot(actor="system", source="system")).result(timeout=30)
    assert outcome.kind == "done", outcome
    t["snapshot"] = moment()
    # DELTA lifts ALPHA's offer at 195 (ALPHA realizes P&L); GAMMA bids 10 @ 180 (rests).
    o["delta_lift"] = place(client, account_id="ACC-DELTA", quantity=40, limit_price="196.00")
    assert o["delta_lift"]["filled_quantity"] == 40
    o["gamma_bid"] = place(client, account_id="ACC-GAMMA", quantity=10, limit_price="180.00")
    t["gamma_open"] = moment()
    limits = client.get("/limits", headers=user_headers(client, "abe")).json()
    [alpha] = [s for s in limits["scopes"] if s["scope"] == "account:ACC-ALPHA"]
    change = act(client, "rose", "/limits/account:ACC-ALPHA/requests",
                 field="max_order_quantity", value="500", reason="probation")
    t["requested"] = moment()
    act(client, "raj", f"/limits/requests/{change['change_id']}/approve", reason="agreed")
    t["approved"] = moment()
    r = client.post(f"/orders/{o['gamma_bid']['order_id']}/cancel")
    assert r.status_code == 200, r.text
    t["canceled"] = moment()
    return Session(t, o, change["change_id"], alpha["version"])


# ------------------------------------------------------------- the tests


def test_positions_open_orders_and_exposure_as_of_each_moment_equal_the_journal(
        client: TestClient) -> None:
    session = trade_a_session(client)
    events = journal(client)
    for name, when in session.moments.items():
        for form in (iso(when), str(when)):  # ISO 8601 and epoch nanoseconds: one moment
            got, position = get_as_of(client, "/positions", form)
            assert as_tuples(got) == expected_positions(events, when), (name, form)
            # The position named is the last event at or before the moment.
            assert position == max((p for p, e in events if e.ts_ns <= when), default=0)
            assert all(e.ts_ns > when for p, e in events if p > position)

            orders, _ = get_as_of(client, "/orders", form)
            assert {o["order_id"]: o["quantity"] - o["filled_quantity"] for o in orders} == \
                expected_open_orders(events, when), (name, form)

            accounts, _ = get_as_of(client, "/accounts", form)
            exposure = expected_gross_exposure(events, when)
            assert {a["account_id"]: Decimal(a["exposure"]) for a in accounts} == {
                a["account_id"]: exposure.get(a["account_id"], Decimal(0)) for a in accounts}
            assert {a["exposure_mode"] for a in accounts} == {"gross"}

    # Spot checks of the script itself (so the figures above are not vacuous).
    t, o = session.moments, session.orders
    first = as_tuples(get_as_of(client, "/positions", iso(t["first_fill"]))[0])
    assert first == {("ACC-ALPHA", "AAPL"): (60, Decimal(190), Decimal(0)),
                     ("ACC-BETA", "AAPL"): (-60, Decimal(190), Decimal(0))}
    later = as_tuples(get_as_of(client, "/positions", iso(t["gamma_open"]))[0])
    assert later[("ACC-ALPHA", "AAPL")] == (20, Decimal(190), Decimal(200))  # 40 x (195-190)
    assert later[("ACC-DELTA", "AAPL")] == (80, Decimal("192.5"), Decimal(0))
    open_then = {x["order_id"]: x for x in get_as_of(client, "/orders", iso(t["first_fill"]))[0]}
    assert set(open_then) == {o["beta_offer"]["order_id"]}
    assert (open_then[o["beta_offer"]["order_id"]]["status"],
            open_then[o["beta_offer"]["order_id"]]["filled_quantity"]) == ("partially_filled", 60)
    gamma = o["gamma_bid"]["order_id"]
    assert gamma in {x["order_id"] for x in get_as_of(client, "/orders", iso(t["approved"]))[0]}
    assert gamma not in {x["order_id"]
                         for x in get_as_of(client, "/orders", iso(t["canceled"]))[0]}
    # As of now, the live answers.
    live = client.get("/positions", headers=user_headers(client, "abe")).json()
    assert get_as_of(client, "/positions", "2200-01-01T00:00:00Z")[0] == live


def test_a_limit_change_shows_as_of_its_approval_and_not_before(client: TestClient) -> None:
    session = trade_a_session(client)
    t, version = session.moments, session.limits_version

    def alpha_limits(when: int) -> tuple[str, int, list[str]]:
        body, _ = get_as_of(client, "/limits", iso(when))
        [alpha] = [s for s in body["scopes"] if s["scope"] == "account:ACC-ALPHA"]
        return (alpha["values"]["max_order_quantity"], alpha["version"],
                [p["change_id"] for p in body["pending"]])

    assert alpha_limits(t["gamma_open"]) == ("10000", version, [])
    assert alpha_limits(t["requested"]) == ("10000", version, [session.change_id])
    assert alpha_limits(t["approved"]) == ("500", version + 1, [])
    assert alpha_limits(t["canceled"]) == ("500", version + 1, [])

    def alpha_account(when: int) -> tuple[int, int]:
        accounts, _ = get_as_of(client, "/accounts", iso(when))
        [alpha] = [a for a in accounts if a["account_id"] == "ACC-ALPHA"]
        return alpha["max_order_quantity"], alpha["limits_version"]

    assert alpha_account(t["requested"]) == (10_000, version)
    assert alpha_account(t["approved"]) == (500, version + 1)
    # Without as_of, /accounts answers as before: the live values and no exposure field.
    live = client.get("/accounts", headers=user_headers(client, "abe")).json()
    assert all("exposure" not in a and "exposure_mode" not in a for a in live)
    now, _ = get_as_of(client, "/accounts", "2200-01-01")
    assert [{k: v for k, v in a.items() if not k.startswith("exposure")} for a in now] == live


def test_before_the_first_event_everything_is_empty_and_in_the_future_it_is_now(
        client: TestClient) -> None:
    trade_a_session(client)
    positions, position = get_as_of(client, "/positions", "1971-01-01T00:00:00Z")
    assert (positions, position) == ([], 0)
    assert get_as_of(client, "/orders", "1")[0] == []
    accounts, _ = get_as_of(client, "/accounts", "0001-01-01T00:00:00+14:00")
    assert {a["exposure"] for a in accounts} == {"0"}
    limits, _ = get_as_of(client, "/limits", "1971-01-01")
    assert limits["pending"] == []

    head = client.get("/health").json()["store"]["head_position"]
    for when in ("9999-12-31T23:59:59.999999-14:00", "99999999999999999999"):
        live = client.get("/orders", headers=user_headers(client, "abe")).json()
        got, position = get_as_of(client, "/orders", when)
        assert position >= head
        assert {o["order_id"] for o in got} == {o["order_id"] for o in live
                                                if o["status"] in ("accepted",
                                                                   "partially_filled")}


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", "-5", "1.5e9", "",
                                   "2026-11-26T25:00:00", "0x10", "2026-11-26T10:00:00+25:00"])
def test_a_malformed_as_of_is_422_naming_the_parameter(client: TestClient, value: str) -> None:
    for path in ENDPOINTS:
        r = client.get(path, params={"as_of": value}, headers=user_headers(client, "abe"))
        assert r.status_code == 422, (path, value, r.text)
        assert ["query", "as_of"] in [d["loc"] for d in r.json()["detail"]], r.text


def test_a_trader_sees_only_their_accounts_as_of_any_moment(client: TestClient) -> None:
    session = trade_a_session(client)
    when = iso(session.moments["gamma_open"])
    positions, _ = get_as_of(client, "/positions", when, user="maria")
    assert {p["account_id"] for p in positions} == {"ACC-ALPHA"}
    everyone, _ = get_as_of(client, "/positions", when)
    assert {p["account_id"] for p in everyone} == {"ACC-ALPHA", "ACC-BETA", "ACC-DELTA"}
    orders, _ = get_as_of(client, "/orders", iso(session.moments["beta_done"]), user="maria")
    assert [o["order_id"] for o in orders] == [session.orders["alpha_offer"]["order_id"]]
    accounts, _ = get_as_of(client, "/accounts", when, user="maria")
    assert [a["account_id"] for a in accounts] == ["ACC-ALPHA"]
    limits, _ = get_as_of(client, "/limits", when, user="maria")
    assert "firm" not in {s["scope"] for s in limits["scopes"]}
    assert {s["scope"] for s in limits["scopes"] if s["scope"].startswith("account:")} == {
        "account:ACC-ALPHA"}
    for path in ("/positions", "/orders"):
        r = client.get(path, params={"as_of": when, "account_id": "ACC-BETA"},
                       headers=user_headers(client, "maria"))
        assert r.status_code == 403, r.text


def test_the_as_of_book_from_a_snapshot_equals_a_replay_from_the_start(
        client: TestClient) -> None:
    session = trade_a_session(client)
    system = system_of(client)
    events = journal(client)
    for name in ("beta_done", "gamma_open", "approved", "canceled"):
        cut = as_of_replay.cut_at(system.store, session.moments[name])
        replayed = as_of_replay.book_at(system.store, system.config, cut.position)
        # The snapshot was taken after "beta_done": later moments start from it.
        assert (replayed.from_snapshot is None) == (name == "beta_done"), name
        plain = as_of_replay.new_book_factory(system.config)()
        for position, event in events:
            if position > cut.position:
                break
            plain.apply(event)
        assert book_snapshot.state_of(replayed.book) == book_snapshot.state_of(plain), name


def test_one_moment_is_replayed_once_for_many_requests(client: TestClient) -> None:
    session = trade_a_session(client)
    cache = as_of_replay.cache_for(system_of(client).store)
    before = cache.replays
    when = session.moments["approved"]
    for _ in range(3):
        for path in ENDPOINTS:
            get_as_of(client, path, iso(when))
    # Another moment with no event between: the same log position, the same replay.
    get_as_of(client, "/positions", iso(when + 1_000))
    assert cache.replays == before + 1


# ------------------------------------------------------------- marketlog replay --until


def cli_env(settings: Settings) -> dict[str, str | None]:
    return {"MARKETLOG_DATA_DIR": str(settings.data_dir),
            "MARKETLOG_DATABASE_URL": settings.database_url,
            "MARKETLOG_READ_DATABASE_URL": None, "MARKETLOG_DATABASE_OWNER_URL": None,
            "MARKETLOG_READER_DATABASE_URL": settings.reader_database_url,
            "MARKETLOG_KAFKA_BOOTSTRAP": None, "COLUMNS": "200", "NO_COLOR": "1",
            # Small batches: whole batches lie after the moment (a replay that only filtered
            # by time never finished then).
            "MARKETLOG_PROJECTION_BATCH": "5"}


def test_replay_until_into_a_fresh_database_holds_the_positions_of_the_journal_prefix(
        client: TestClient, backend: Settings, tmp_path: Path) -> None:
    session = trade_a_session(client)
    events = journal(client)
    runner = CliRunner()
    for name in ("first_fill", "gamma_open"):
        when = session.moments[name]
        into = f"sqlite:///{tmp_path / f'replay-{name}.sqlite'}"
        result = runner.invoke(cli_app, ["replay", "--into", into, "--until", iso(when)],
                               env=cli_env(backend))
        assert result.exit_code == 0, result.output
        assert "replaying" in result.output and f"as of {iso(when)}" in result.output
        cut = max(p for p, e in events if e.ts_ns <= when)
        assert f"replayed {cut:,} events" in result.output, result.output
        assert len(events) - cut > 5  # more than a batch of the log lies after the moment
        engine = sa.create_engine(into)
        try:
            with engine.connect() as conn:
                replayed = queries.list_positions(conn)
                orders = queries.list_orders(conn, limit=5000)
        finally:
            engine.dispose()
        assert as_tuples(replayed) == expected_positions(events, when), name
        open_orders = {o["order_id"]: o["quantity"] - o["filled_quantity"] for o in orders
                       if o["status"] in ("accepted", "partially_filled", "pending_cancel",
                                          "pending_replace")}
        assert open_orders == expected_open_orders(events, when), name
        # The API's as-of answer and the replayed database agree.
        assert get_as_of(client, "/positions", iso(when))[0] == replayed
    # Before the first event: a replay of nothing, into empty read models.
    empty = f"sqlite:///{tmp_path / 'replay-empty.sqlite'}"
    result = runner.invoke(cli_app, ["replay", "--into", empty, "--until", "1971-01-01"],
                           env=cli_env(backend))
    assert result.exit_code == 0 and "replayed 0 events" in result.output, result.output
    engine = sa.create_engine(empty)
    try:
        with engine.connect() as conn:
            assert queries.list_positions(conn) == [] == queries.list_orders(conn)
    finally:
        engine.dispose()
    # A replay into a database that already holds read models is refused.
    again = runner.invoke(cli_app, ["replay", "--into", into], env=cli_env(backend))
    assert again.exit_code == 2, again.output
