"""The conditions a run was measured under (printed above the results)."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

from infrastructure.event_store import EventStore
from infrastructure.settings import Settings


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return f"{os.cpu_count()} logical" + (f" ({usable} usable)" if usable else "")


def sqlite_settings() -> dict[str, str]:
    """journal_mode and synchronous as the event store's SQLite connections see them."""
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        store = EventStore.open(Settings(data_dir=Path(tmp)))
        try:
            with store.datastore.transaction(commit=False) as curs:
                curs.execute("PRAGMA journal_mode")
                journal = str(curs.fetchone()[0])
                curs.execute("PRAGMA synchronous")
                sync = int(curs.fetchone()[0])
            import sqlite3
            version = sqlite3.sqlite_version
        finally:
            store.close()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {"journal_mode": journal, "synchronous": f"{names.get(sync, sync)} ({sync})",
            "version": version}
