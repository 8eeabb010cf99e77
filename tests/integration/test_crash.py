"""The crash test: SIGKILL the API server mid-stream, restart it, and lose nothing acknowledged.

The server is a real subprocess (uvicorn over ``api.app:create_app``) on the test's store,
SQLite or PostgreSQL. Client threads stream orders (accepted and rejected, several accounts,
distinct client_order_ids) and keep every acknowledged response. Once enough are acknowledged
the server is killed with requests in flight, then started again on the same store. Every
acknowledged order must be there with the same decision, a re-send must return the original,
and the store must hold exactly one decision per client_order_id with an intact hash chain.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from domain.events import OrderAccepted, OrderRejected
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings
from projections.rebuild import digest, rebuild

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA")
ACKNOWLEDGED_BEFORE_KILL = 300
CLIENT_THREADS = 8
REQUEST_TIMEOUT_S = 15.0


def order_payload(n: int) -> dict[str, Any]:
    """Order number n of the stream: mostly marketable AAPL around 190, one in five rejected."""
    account = ACCOUNTS[n % len(ACCOUNTS)]
    payload: dict[str, Any] = {
        "client_order_id": f"crash-{n:05d}",
        "account_id": account,
        "symbol": "AAPL",
        "side": "buy" if (n // 4) % 2 == 0 else "sell",
        "quantity": 1 + (n * 7) % 50,
        "order_type": "limit",
        "limit_price": f"{189 + (n * 13) % 200 / 100:.2f}",
        "time_in_force": "day",
    }
    if n % 10 == 3:
        payload["quantity"] = 20_000  # max_qty
    elif n % 10 == 7:
        payload["limit_price"] = "250.00"  # price_collar
    elif n % 20 == 11:
        payload.update(symbol="NEWCO")  # no reference price yet
    elif n % 10 == 9:
        payload.update(order_type="market", limit_price=None, time_in_force="ioc")
    return payload


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn api.app:create_app --factory`` as a subprocess on the given store."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETLOG_")}
        env["MARKETLOG_DATA_DIR"] = str(self.settings.data_dir)
        if self.settings.database_url:
            env["MARKETLOG_DATABASE_URL"] = self.settings.database_url
        if self.settings.read_database_url:
            env["MARKETLOG_READ_DATABASE_URL"] = self.settings.read_database_url
        if self.settings.config_file:
            env["MARKETLOG_CONFIG_FILE"] = str(self.settings.config_file)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        log = (self.log_dir / f"server-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--no-access-log"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not healthy after {timeout}s:\n{self.log()}")

    def headers(self, username: str = "crash-test") -> dict[str, str]:
        """The user's key, written by the server on its first start (data dir/credentials)."""
        token = (self.settings.data_dir / "credentials" / f"{username}.token").read_text()
        return {"Authorization": f"Bearer {token.strip()}"}

    def log(self) -> str:
        path = self.log_dir / f"server-{self.starts}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server(backend: Settings, tmp_path: Path) -> Iterator[Server]:
    server = Server(backend, tmp_path)
    try:
        yield server
    finally:
        server.kill()


class Stream:
    """Client threads posting orders until told to stop or the server goes away."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.numbers = itertools.count()
        self.lock = threading.Lock()
        self.acknowledged: dict[int, tuple[int, dict[str, Any]]] = {}
        self.unexpected: list[tuple[int, int, str]] = []
        self.failed_in_flight = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(CLIENT_THREADS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float = 30.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "client threads hung"

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while not self.stop.is_set():
                with self.lock:
                    n = next(self.numbers)
                try:
                    response = client.post("/orders", json=order_payload(n),
                                           headers=self.headers)
                except httpx.HTTPError:
                    with self.lock:
                        self.failed_in_flight += 1
                    return  # the server is gone (killed): this request's fate is unknown
                with self.lock:
                    if response.status_code in (200, 201):
                        self.acknowledged[n] = (response.status_code, response.json())
                    else:
                        self.unexpected.append((n, response.status_code, response.text))


def audit_store(settings: Settings, replay_url: str) -> tuple[Counter[tuple[str, str]], Any, str]:
    """Decisions per (account, client_order_id), the chain check and a from-scratch replay."""
    store = EventStore.open(settings)
    try:
        counts: Counter[tuple[str, str]] = Counter(
            (e.account_id, e.client_order_id)
            for _, e in store.read() if isinstance(e, OrderAccepted | OrderRejected))
        return counts, store.verify(), rebuild(store, replay_url)
    finally:
        store.close()


def read_model_digest(settings: Settings) -> str:
    engine = sa.create_engine(settings.read_models_url)
    try:
        with engine.connect() as conn:
            return digest(conn)
    finally:
        engine.dispose()


def test_sigkill_mid_stream_loses_nothing_acknowledged(server: Server, backend: Settings,
                                                       tmp_path: Path) -> None:
    server.start()
    stream = Stream(server.url, server.headers())
    stream.start()
    deadline = time.monotonic() + 120
    while stream.count() < ACKNOWLEDGED_BEFORE_KILL:
        assert time.monotonic() < deadline, f"too slow: {stream.count()} acknowledged"
        assert not stream.unexpected, stream.unexpected[:5]
        assert any(t.is_alive() for t in stream.threads), "every client stopped early"
        time.sleep(0.005)
    server.kill()  # SIGKILL with requests in flight
    stream.join()
    acknowledged = dict(stream.acknowledged)
    assert stream.failed_in_flight > 0, "the kill should catch requests in flight"

    assert not stream.unexpected, stream.unexpected[:5]
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    assert {status for status, _ in acknowledged.values()} == {201}
    rejected = [b for _, b in acknowledged.values() if b["status"] == "rejected"]
    assert rejected and len(rejected) < len(acknowledged), "the stream mixes both decisions"
    assert len({b["account_id"] for _, b in acknowledged.values()}) == len(ACCOUNTS)

    server.start()  # same store, same port
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
        for n, (_, before) in sorted(acknowledged.items()):
            response = client.get(f"/orders/{before['order_id']}", headers=server.headers())
            assert response.status_code == 200, (n, response.text)
            after = response.json()
            for key in ("client_order_id", "account_id", "symbol", "side", "order_type",
                        "time_in_force"):
                assert after[key] == before[key], (n, key, before, after)
            if before["status"] == "rejected":
                assert after["status"] == "rejected", (n, before, after)
                assert after["reject"] == before["reject"], (n, before, after)
            else:
                assert after["status"] != "rejected", (n, before, after)
                assert after["reject"] is None
                # Fills acknowledged in the response were durable too.
                assert after["filled_quantity"] >= before["filled_quantity"], (n, before, after)

        for n, (_, before) in sorted(acknowledged.items()):
            response = client.post("/orders", json=order_payload(n),
                                   headers=server.headers())
            assert response.status_code == 200, (n, response.status_code, response.text)
            assert response.json()["order_id"] == before["order_id"], n
            assert (response.json()["status"] == "rejected") == (before["status"] == "rejected")

        chain = client.get("/audit/verify", headers=server.headers()).json()
        assert chain["ok"] is True, chain
        deadline = time.monotonic() + 30
        while (health := client.get("/health").json())["projections"]["lag"]:
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
    server.stop()

    counts, check, replayed = audit_store(backend, f"sqlite:///{tmp_path / 'replay.sqlite'}")
    assert check.ok, check
    # The views the killed process left behind, caught up after the restart, equal a replay.
    assert read_model_digest(backend) == replayed
    twice = {key: count for key, count in counts.items() if count != 1}
    assert not twice, f"journaled more than once: {sorted(twice.items())[:10]}"
    for _, body in acknowledged.values():
        assert counts[(body["account_id"], body["client_order_id"])] == 1, body
