"""The local Kafka broker that infrastructure/kafka.sh runs, as tests and benchmarks use it: its
bootstrap address, a readiness wait, and private throwaway brokers for tests that stop, kill
or restart a broker (the shared one must never be restarted: others' tests use it).

A private broker is run by the same script as the shared one (one code path: the same jars,
configuration template and start/stop logic), pointed at its own home and ports through
kafka.sh's environment variables."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient  # type: ignore[import-untyped, unused-ignore]

BOOTSTRAP_VAR = "MARKETLOG_TEST_KAFKA_BOOTSTRAP"
ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = ROOT / ".state" / "kafka.env"
SCRIPT = ROOT / "infrastructure" / "kafka.sh"

_SCRIPT_TIMEOUT_S = 300.0  # a first run resolves the jars from Maven Central


def bootstrap_from_env() -> str | None:
    """``host:port`` of the shared broker: from the environment (``make test``/``make bench``
    export it), else from .state/kafka.env (written by infrastructure/kafka.sh)."""
    value = os.environ.get(BOOTSTRAP_VAR)
    if value or not STATE_FILE.is_file():
        return value
    for raw in STATE_FILE.read_text(encoding="utf-8").splitlines():
        key, _, val = raw.strip().removeprefix("export ").partition("=")
        if key.strip() == BOOTSTRAP_VAR:
            return val.strip().strip("'\"") or None
    return None


def kafka_home() -> Path:
    """The shared broker's home (data/, logs/, lib/), as kafka.sh computes it."""
    home = os.environ.get("MARKETLOG_KAFKA_HOME")
    if home:
        return Path(home)
    # One per machine for root, like kafka.sh's default.
    return Path("/var/lib/marketlog/kafka") if os.geteuid() == 0 else ROOT / ".state" / "kafka"


def kafka_lib() -> Path:
    """The broker's jars, shared by the shared broker and every private one."""
    lib = os.environ.get("MARKETLOG_KAFKA_LIB")
    return Path(lib) if lib else kafka_home() / "lib"


def admin_client(bootstrap: str, timeout: float = 10.0, **configs: object) -> KafkaAdminClient:
    ms = int(timeout * 1000)
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="marketlog-tests",
                            request_timeout_ms=ms, bootstrap_timeout_ms=ms, **configs)


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.partition(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except (OSError, ValueError):
        return False
    return True


def wait_until_ready(bootstrap: str, timeout: float = 60.0) -> None:
    """Return once the broker at ``bootstrap`` answers a metadata request (a TCP connect is
    not enough: requests are served only once the broker is unfenced); TimeoutError if it
    does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if _port_open(bootstrap):  # cheap until the listener is up
            try:
                # Short backoffs: the client's own grow to 30 s between reconnects.
                admin = admin_client(bootstrap, timeout=max(1.0, min(2.0, remaining)),
                                     reconnect_backoff_max_ms=200)
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except Exception as exc:  # any client error means "not yet"
                last = exc
        else:
            last = ConnectionRefusedError(f"nothing listens on {bootstrap}")
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"Kafka at {bootstrap} did not answer within {timeout:.0f}s "
                f"(last error: {last!r})") from last
        time.sleep(0.1)


def run_script(*args: str, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """``bash infrastructure/kafka.sh ARGS`` with extra environment; raises with its output
    (stdout: the status line, stderr: diagnostics and the broker's log tail) on failure."""
    full_env = {**os.environ, "MARKETLOG_KAFKA_PYTHON": sys.executable, **(env or {})}
    proc = subprocess.run(["bash", str(SCRIPT), *args], env=full_env, capture_output=True,
                          text=True, timeout=_SCRIPT_TIMEOUT_S, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kafka.sh {' '.join(args)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (the broker is a child of init once detached)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return not stat.rpartition(") ")[2].startswith("Z")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TemporaryBroker:
    """A private single-node broker: its own home (data, logs, config) in a temporary
    directory, fixed ports for its whole life, the shared jars. ``stop()`` shuts it down
    cleanly, ``kill()`` with SIGKILL; ``start()`` brings it back on the SAME ports and data."""

    home: Path
    port: int
    controller_port: int
    lib: Path
    heap: str = "256m"
    session_timeout_ms: int = 4000  # the restart delay after kill(); Kafka's default is 9000
    # C1 only: half the CPU to start (measured 3.7 s against 7.8 s) for a short-lived broker
    # on a small shared machine; the shared broker keeps the full JIT.
    jvm_opts: str = "-XX:TieredStopAtLevel=1"
    _env: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._env = {
            "MARKETLOG_KAFKA_HOME": str(self.home),
            "MARKETLOG_KAFKA_LIB": str(self.lib),
            "MARKETLOG_KAFKA_PORT": str(self.port),
            "MARKETLOG_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "MARKETLOG_KAFKA_HEAP": self.heap,
            "MARKETLOG_KAFKA_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            "MARKETLOG_KAFKA_JVM_OPTS": self.jvm_opts,
            "MARKETLOG_KAFKA_ENV_FILE": "",  # never overwrite the shared .state/kafka.env
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """kafka.sh's environment for this broker (``run_script(..., env=broker.env)``)."""
        return dict(self._env)

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "server.log"

    def script(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_script(*args, env=self._env, check=check)

    @property
    def pid(self) -> int | None:
        """The broker's pid while it runs, else None."""
        try:
            pid = int((self.home / "kafka.pid").read_text(encoding="ascii").strip())
            # A recycled pid must not be taken (and killed) for ours: check what it runs.
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = str(self.home / "server.properties").encode() in cmdline
        return pid if ours and _alive(pid) else None

    def start(self) -> None:
        """Start (format on first use) and wait until it answers; no-op while it runs."""
        self.script("start")

    def stop(self) -> None:
        """SIGTERM and wait for the clean shutdown (kafka.sh fails if it needed SIGKILL)."""
        self.script("stop")

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown hook, no flush; returns once it is gone."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka pid {pid} survived SIGKILL for 30s")
            time.sleep(0.05)


def ensure_jars() -> Path:
    """The shared lib/, resolved by ``kafka.sh install`` if it does not hold the jars yet."""
    lib = kafka_lib()
    if not (lib / ".complete").is_file():
        run_script("install", env={"MARKETLOG_KAFKA_LIB": str(lib)})
    return lib


@contextmanager
def temporary_broker(heap: str = "256m", start: bool = True) -> Iterator[TemporaryBroker]:
    """A private broker on free loopback ports, started (unless ``start=False``) and yielded;
    killed and removed with its data afterwards, whatever state the test left it in."""
    lib = ensure_jars()
    home = Path(tempfile.mkdtemp(prefix="marketlog-kafkatmp-"))
    port = _free_port()
    controller_port = _free_port()
    while controller_port == port:
        controller_port = _free_port()
    broker = TemporaryBroker(home, port, controller_port, lib, heap)
    try:
        if start:
            broker.start()
        yield broker
    finally:
        try:
            broker.kill()  # throwaway: no need to wait for a clean shutdown
        finally:
            shutil.rmtree(home, ignore_errors=True)
