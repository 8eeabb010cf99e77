"""Drift of the system clock against a time reference (CAT: within 50 ms of NIST time).

An SNTP client (RFC 4330) and the thread that asks the configured reference
(``MARKETLOG_TIME_REFERENCE``, e.g. ``time.nist.gov``) every ``MARKETLOG_TIME_CHECK_SECONDS``
and hands each measurement to the engine as a command: the engine decides what to record
(domain.clock_watch.ReferenceWatch), single writer, so this thread never writes the log.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from commands.models import RecordTimeReferenceCheck
from domain.values import Source
from infrastructure.clock import utc_now_ns

log = logging.getLogger(__name__)

NTP_PORT = 123
NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
PACKET = struct.Struct("!BBbb11I")  # 48 bytes: header, then 11 words (RFC 4330 section 4)
MODE_CLIENT, MODE_SERVER, VERSION = 3, 4, 4
LEAP_UNSYNCHRONIZED = 3


class Reading(NamedTuple):
    """One check: the offset (reference - system clock) and round trip, or why none."""

    observed_ns: int  # the system clock when the answer arrived (or the check gave up)
    offset_ns: int | None = None
    delay_ns: int | None = None
    error: str | None = None


def parse_reference(reference: str) -> tuple[str, int]:
    """``host[:port]`` (port 123 when omitted)."""
    host, sep, port = reference.rpartition(":")
    if not sep:
        return reference, NTP_PORT
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host[:port]: {reference!r}")
    return host, int(port)


def to_ntp(ns: int) -> int:
    """Unix epoch nanoseconds as a 64-bit NTP timestamp (32.32 fixed point since 1900)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return ((seconds + NTP_EPOCH_OFFSET_S) << 32) | ((rest << 32) // 1_000_000_000)


def from_ntp(stamp: int) -> int:
    """A 64-bit NTP timestamp as Unix epoch nanoseconds."""
    seconds, fraction = stamp >> 32, stamp & 0xFFFF_FFFF
    return (seconds - NTP_EPOCH_OFFSET_S) * 1_000_000_000 + ((fraction * 1_000_000_000) >> 32)


def offset_and_delay(t1: int, t2: int, t3: int, t4: int) -> tuple[int, int]:
    """RFC 4330 section 5: t1 request sent (client clock), t2 received and t3 answered
    (reference clock), t4 answer received (client clock); nanoseconds."""
    return ((t2 - t1) + (t3 - t4)) // 2, (t4 - t1) - (t3 - t2)


def request(t1_ns: int) -> bytes:
    # LI 0, version 4, mode 3; our send time as the transmit timestamp, echoed as originate.
    words = [0] * 11
    stamp = to_ntp(t1_ns)
    words[9], words[10] = stamp >> 32, stamp & 0xFFFF_FFFF
    return PACKET.pack((VERSION << 3) | MODE_CLIENT, 0, 0, 0, *words)


def query(host: str, port: int = NTP_PORT, timeout: float = 1.0,
          clock: Callable[[], int] = utc_now_ns) -> Reading:
    """Ask the reference once. Errors (no answer, a refused port, a malformed or
    unsynchronized answer) are a ``Reading`` with ``error``, never an exception."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((host, port))
            t1 = clock()
            sent = request(t1)
            sock.send(sent)
            data = sock.recv(512)
            t4 = clock()
    except OSError as exc:  # timeouts, refusals and name lookups included
        return Reading(clock(), error=f"{type(exc).__name__}: {exc}")
    if len(data) < PACKET.size:
        return Reading(t4, error=f"short answer ({len(data)} bytes)")
    header, stratum, _poll, _precision, *words = PACKET.unpack_from(data)
    if header & 0x7 != MODE_SERVER or header >> 6 == LEAP_UNSYNCHRONIZED or stratum == 0:
        return Reading(t4, error=f"not a synchronized server answer (header {header:#x}, "
                                 f"stratum {stratum})")
    if data[24:32] != sent[40:48]:
        return Reading(t4, error="the answer is not to this request (originate differs)")
    t2 = from_ntp((words[7] << 32) | words[8])
    t3 = from_ntp((words[9] << 32) | words[10])
    offset, delay = offset_and_delay(t1, t2, t3, t4)
    return Reading(t4, offset, delay)


class TimeReferenceChecker:
    """Checks the reference every ``interval`` seconds and submits what it found to the
    engine (``RecordTimeReferenceCheck``); the engine records beginnings and ends."""

    def __init__(self, reference: str, submit: Callable[[Any], Any], interval: float = 60.0,
                 clock: Callable[[], int] = utc_now_ns, timeout: float = 1.0) -> None:
        self.reference = reference
        self.host, self.port = parse_reference(reference)
        self.submit = submit
        self.interval = interval
        self.clock = clock
        self.timeout = min(timeout, interval)
        self.checks = 0
        self.last: Reading | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> Reading:
        reading = query(self.host, self.port, self.timeout, self.clock)
        self.last = reading
        command = RecordTimeReferenceCheck(
            actor="system", source=Source.SYSTEM, reference=self.reference,
            observed_ns=reading.observed_ns, offset_ns=reading.offset_ns,
            delay_ns=reading.delay_ns, error=None if reading.error is None
            else reading.error[:300])
        try:
            self.submit(command).result(timeout=max(10.0, self.interval))
        except Exception as exc:  # busy, halted or stopping: the next check tries again
            log.warning("time reference check not handed to the engine: %s", exc)
        self.checks += 1
        return reading

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="time-reference")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
