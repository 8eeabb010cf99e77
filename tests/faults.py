"""A TCP proxy that puts database outages between the app under test and the real server.

The app is pointed at the proxy's port instead of PostgreSQL's; a test switches the proxy's
mode to stage an outage without touching the shared server (which other tests and other
checkouts use at the same time):

* ``forward()``: relay bytes both ways (the normal case, and the way back from an outage);
* ``refuse()``: reset every new connection as soon as it arrives, as a host whose database
  is down answers (the client fails at once; a reset rather than an unbound port, so the
  port cannot be taken by someone else meanwhile);
* ``blackhole()``: accept new connections and never answer, as a hung server or a network
  partition looks (the client waits until its own timeout);
* ``cut()``: drop every open connection now, as a server restart or crash does; combine it
  with ``refuse()`` or ``blackhole()`` so the clients' pooled connections go too.

Modes only change what happens to connections from then on; open connections keep
flowing until ``cut()``.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

MODES = ("forward", "refuse", "blackhole")


def _drop(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), waking any thread blocked on the socket."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by another thread
    sock.close()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self._closed = threading.Lock()
        self.closed = False

    def close(self) -> None:
        with self._closed:
            if self.closed:
                return
            self.closed = True
        _drop(self.client)
        _drop(self.server)


class FaultProxy:
    """``with FaultProxy((host, port)) as proxy:`` listens on 127.0.0.1:``proxy.port``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "forward"
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._held: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # the accept loop notices close() within 50 ms
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    def url(self, url: str) -> str:
        """``url`` (postgresql://user:pw@host:port/db) with the proxy in place of the server."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # ----------------------------------------------------------------------- modes

    def forward(self) -> None:
        self._set("forward")
        with self._lock:  # the half-open connections of a blackhole end with it
            held, self._held = self._held, set()
        for sock in held:
            _drop(sock)

    def refuse(self) -> None:
        self._set("refuse")

    def blackhole(self) -> None:
        self._set("blackhole")

    def cut(self) -> int:
        """Drop every open connection; returns how many there were."""
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            link.close()
        return len(links)

    def _set(self, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            self.mode = mode

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(not link.closed for link in self._links)

    # -------------------------------------------------------------------- plumbing

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            client.settimeout(None)
            with self._lock:
                mode = self.mode
                if mode == "blackhole":
                    self._held.add(client)  # accepted, never read, never answered
                    continue
            if mode == "refuse":
                _drop(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _drop(client)
                continue
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(link, src, dst), daemon=True,
                                 name="fault-proxy-pump").start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            link.close()
            with self._lock:
                self._links.discard(link)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        self.cut()
        self.forward()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
