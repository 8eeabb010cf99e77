"""A real SNTP server for tests (RFC 4330): a thread with a UDP socket on 127.0.0.1 at an
ephemeral port, answering with its clock plus ``offset_ns``; ``stop`` simulates an outage
(the port closes: requests are refused or time out)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from infrastructure.clock import utc_now_ns
from infrastructure.time_reference import to_ntp

PACKET = struct.Struct("!BBbb11I")


class SntpServer:
    def __init__(self, clock: Callable[[], int] = utc_now_ns, offset_ns: int = 0) -> None:
        self.clock = clock
        self.offset_ns = offset_ns  # the reference's time less the clock's
        self.answered = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="sntp-server")
        self._thread.start()

    @property
    def reference(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            received = self.clock() + self.offset_ns
            if len(data) < PACKET.size or data[0] & 0x7 != 3:
                continue
            words = [0] * 11
            words[2] = int.from_bytes(b"TEST")
            for index in (3, 7, 9):  # reference, receive and transmit: one instant
                stamp = to_ntp(received)
                words[index], words[index + 1] = stamp >> 32, stamp & 0xFFFF_FFFF
            answer = bytearray(PACKET.pack((4 << 3) | 4, 1, 6, -20, *words))
            answer[24:32] = data[40:48]  # originate: the client's transmit timestamp
            self._sock.sendto(bytes(answer), peer)
            self.answered += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
