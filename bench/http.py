"""Row 5: orders through the whole HTTP path — uvicorn, FastAPI validation, the engine thread,
group commit on the embedded SQLite default — from concurrent HTTP clients.

The server is a real ``uvicorn api.app:create_app`` process; the clients are keep-alive
HTTP/1.1 connections from this process, on the same machine (they share its two cores).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.workload import BENCH_CONFIG, order_fields, percentiles

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class HttpResult:
    orders: int
    concurrency: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def config_toml(doc: dict[str, Any]) -> str:
    """The bench firm as TOML for the server process (tables and arrays of tables only)."""
    firm = {k: v for k, v in doc["firm"].items() if k != "defaults"}
    lines = ["[firm]", *(f"{k} = {_toml_value(v)}" for k, v in firm.items()),
             "[firm.defaults]",
             *(f"{k} = {_toml_value(v)}" for k, v in doc["firm"]["defaults"].items())]
    for table in ("instruments", "accounts", "users"):
        for entry in doc[table]:
            lines += [f"[[{table}]]", *(f"{k} = {_toml_value(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(orders: int, concurrency: int, *, auth: bool = True) -> HttpResult:
    """``auth=False``: the same app with authentication replaced by a fixed caller (a
    bench-only factory, ``bench.http_app``), to measure what authentication costs."""
    factory = "api.app:create_app" if auth else "bench.http_app:create_app_without_auth"
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-http-") as tmp:
        config = Path(tmp) / "firm.toml"
        config.write_text(config_toml(BENCH_CONFIG))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETLOG_")}
        env.update(MARKETLOG_DATA_DIR=str(Path(tmp) / "data"), MARKETLOG_CONFIG_FILE=str(config))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", factory, "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log"], cwd=ROOT, env=env)
        try:
            return asyncio.run(_drive(f"http://127.0.0.1:{port}", orders, concurrency,
                                      Path(tmp) / "data" / "credentials" / "bench.token"))
        finally:
            server.terminate()
            server.wait(30)


async def _post_loop(host: str, port: int, bodies: Any, latencies: list[float],
                     statuses: dict[int, int], token: bytes) -> None:
    """One keep-alive connection posting orders back to back.

    A minimal HTTP/1.1 client on asyncio streams: httpx's async pool costs ~1 ms of CPU per
    request here, so with 64 clients the load generator, not the server, was the bottleneck.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            payload = orjson.dumps(body)
            request = (b"POST /orders HTTP/1.1\r\nHost: bench\r\n"
                       b"Content-Type: application/json\r\nAuthorization: Bearer " + token +
                       b"\r\n"
                       b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            t0 = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - t0) * 1000)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _drive(base: str, orders: int, concurrency: int, token_file: Path) -> HttpResult:
    # The identity travels in a header over HTTP, not in the body.
    bodies = iter([{k: v for k, v in f.items() if k not in ("actor", "source")}
                   for f in order_fields(orders, seed=23, prefix="H")])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for _ in range(300):  # the server is up once /health answers
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the API server did not start")
    # The server wrote a key per configured user on its first start (credentials/).
    token = token_file.read_text().strip().encode()
    host, port = base.removeprefix("http://").split(":")
    started = time.perf_counter()
    await asyncio.gather(*(_post_loop(host, int(port), bodies, latencies, statuses, token)
                           for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    p50, p99 = percentiles(latencies, 50, 99)
    return HttpResult(orders, concurrency, seconds, p50, p99, statuses)
