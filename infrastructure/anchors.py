"""Chain-head anchors: committed chain heads recorded OUTSIDE the event store's database.

A hash chain alone cannot show that its tail was cut off, or that the whole chain was
recomputed after an edit: both leave a chain that verifies. Recording each committed head
(position, hash, time) somewhere the application's database role cannot rewrite closes that
hole (issue 5, item 6; ARCHITECTURE rule 5): ``verify`` then reports a store whose head is
below an anchored position (truncation) or whose record at an anchored position hashes
differently (rewrite).

``ChainAnchor`` is the interface; ``FileAnchor`` an append-only JSON-lines file, one line per
committed transaction. The Kafka chain-head checkpoints topic is meant to be a second
implementation (ARCHITECTURE picture), so the store takes a list of anchors.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson


@dataclass(frozen=True)
class AnchorEntry:
    store_id: str
    position: int
    hash: str
    at_ns: int


class ChainAnchor(Protocol):
    """Where committed chain heads are recorded and read back from."""

    name: str

    def record(self, position: int, head_hash: str, at_ns: int) -> None:
        """Record a committed head; cheap (called after every commit)."""

    def read(self, cursor: int = 0) -> tuple[list[AnchorEntry], int]:
        """Heads of this store recorded after ``cursor`` (0: all), oldest first, and the
        cursor to pass next time (incremental verification)."""

    def last(self) -> AnchorEntry | None:
        """The most recently recorded head of this store, if any."""

    def close(self) -> None: ...


class FileAnchor:
    """Append-only JSON-lines checkpoint file; one ``{"store","position","hash","at_ns"}``
    line per committed transaction.

    Every line is written (to the OS) right after the commit, so a killed process loses
    none; ``fsync`` runs at most every ``fsync_interval`` seconds and at close, so an anchor
    costs microseconds per transaction, not a disk flush. A machine crash may lose the last
    fraction of a second of anchors; the store then still verifies (the anchor is behind the
    store, never ahead of it). Lines of other stores (``store`` differs) are ignored, so
    several stores may share a file.
    """

    def __init__(self, path: Path, store_id: str, *, writable: bool = True,
                 fsync_interval: float = 0.1) -> None:
        self.path = path
        self.name = f"anchor file {path}"
        self.store_id = store_id
        self._writable = writable
        self._fsync_interval = fsync_interval
        self._fd: int | None = None
        self._last_fsync = 0.0
        self._dirty = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- writing

    def record(self, position: int, head_hash: str, at_ns: int) -> None:
        line = orjson.dumps({"store": self.store_id, "position": position,
                             "hash": head_hash, "at_ns": at_ns}) + b"\n"
        with self._lock:
            if self._fd is None:
                if not self._writable:
                    raise PermissionError(f"{self.name} is opened read-only")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # O_APPEND: every write lands at the end, whoever else appends to the file.
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)  # one write(2) per line: whole lines, even with peers
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_interval:
                os.fsync(self._fd)
                self._last_fsync, self._dirty = now, False
            else:
                self._dirty = True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                if self._dirty:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    # ----------------------------------------------------------------- reading

    def _parse(self, data: bytes) -> tuple[list[AnchorEntry], int]:
        """Entries of the complete lines in ``data`` and the bytes they take (a trailing
        partial line, being written right now, is left for the next read)."""
        out: list[AnchorEntry] = []
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            if not raw.strip():
                continue
            try:
                d = orjson.loads(raw)
                entry = AnchorEntry(str(d["store"]), int(d["position"]), str(d["hash"]),
                                    int(d["at_ns"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                # A damaged line is evidence too: surface it as an impossible anchor.
                entry = AnchorEntry(self.store_id, -1, raw[:80].decode("utf-8", "replace"), 0)
            if entry.store_id == self.store_id:
                out.append(entry)
        return out, end

    def read(self, cursor: int = 0) -> tuple[list[AnchorEntry], int]:
        """``cursor`` is a byte offset in the file, always at a line boundary."""
        try:
            with self.path.open("rb") as f:
                f.seek(cursor)
                parsed, used = self._parse(f.read())
        except FileNotFoundError:
            return [], 0
        return parsed, cursor + used

    def last(self) -> AnchorEntry | None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        window = 1 << 16
        with self.path.open("rb") as f:
            while True:
                start = max(0, size - window)
                f.seek(start)
                data = f.read(size - start)
                if start > 0:  # the first line of the window is probably partial
                    data = data[data.find(b"\n") + 1:]
                parsed, _ = self._parse(data)
                if parsed:
                    return parsed[-1]
                if start == 0:
                    return None
                window *= 4
