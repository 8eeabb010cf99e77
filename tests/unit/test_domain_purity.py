"""ARCHITECTURE rule 4: the domain does no I/O and reads no clock or randomness.

Randomness enters the domain only as a seeded generator: ``from random import Random``,
constructed with a seed (a simulation or a demo is then a pure function of its seed); the
module's shared, unseeded functions (``random.random()``) stay banned with the module.

The scan is mechanical (AST), so a new module under ``domain/`` is covered without
anyone remembering to add it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
MODULES = sorted(DOMAIN.rglob("*.py"))

ALLOWED_THIRD_PARTY = ("domain", "eventsourcing.domain")
# Standard-library modules that do I/O, talk to the OS or the network, or read the clock.
BANNED_STDLIB = frozenset({
    "os", "pathlib", "io", "shutil", "tempfile", "glob", "socket", "ssl", "select",
    "selectors", "asyncio", "subprocess", "multiprocessing", "threading", "signal",
    "sqlite3", "urllib", "http", "smtplib", "ftplib", "logging", "time", "random",
    "secrets", "builtins", "importlib", "pickle", "shelve", "dbm", "tomllib", "json",
})
BANNED_CALLS = frozenset({
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "monotonic_ns"),
    ("time", "perf_counter"), ("time", "perf_counter_ns"), ("uuid", "uuid1"),
    ("uuid", "uuid4"), ("os", "urandom"), ("os", "getenv"), ("os", "environ"),
})
SEEDED = "random.Random"  # the only name of a banned module the domain may import
BANNED_NAMES = frozenset({
    "open", "print", "input", "uuid1", "uuid4", "urandom", "eval", "exec", "__import__",
})


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: inside domain by construction
                continue
            module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names]
            if names != [SEEDED]:  # the seeded generator alone: see SEEDED
                found.append((node.lineno, module))
            found += [(node.lineno, name) for name in names]
    return found


def _allowed(module: str) -> bool:
    if any(module == p or module.startswith(p + ".") for p in ALLOWED_THIRD_PARTY):
        return True
    top = _top(module)
    if module == "__future__" or module.startswith("__future__."):
        return True
    return top in sys.stdlib_module_names and top not in BANNED_STDLIB


def test_domain_modules_found() -> None:
    names = {p.name for p in MODULES}
    assert {"book_of_record.py", "controls.py", "events.py", "lifecycle.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_stdlib_domain_or_eventsourcing_domain(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for line, module in _imports(tree):
        parent = module.rsplit(".", 1)[0] if "." in module else module
        # `from x import name` yields "x.name": allowed when x is
        if module == SEEDED:
            continue
        if not (_allowed(module) or _allowed(parent)) or _top(module) in BANNED_STDLIB:
            bad.append(f"{path.name}:{line}: {module}")
    assert not bad, "domain imports outside the allowed set:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_random_generator_is_always_seeded(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    unseeded = [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "Random" and not (node.args or node.keywords)]
    assert not unseeded, "Random() without a seed: " + ", ".join(unseeded)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_clock_randomness_or_io_calls(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in BANNED_CALLS:
                bad.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            if (node.value.attr, node.attr) in BANNED_CALLS:
                bad.append(f"{path.name}:{node.lineno}: ...{node.value.attr}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in BANNED_NAMES:
            bad.append(f"{path.name}:{node.lineno}: {node.id}")
    assert not bad, "domain reads the clock, randomness or does I/O:\n" + "\n".join(bad)


# ------------------------------------------------------------ the scanner itself works

@pytest.mark.parametrize(
    "source",
    [
        "import sqlalchemy",
        "from psycopg import connect",
        "import kafka",
        "from fastapi import FastAPI",
        "import orjson",
        "from pydantic_settings import BaseSettings",
        "import requests",
        "import socket",
        "import os",
        "from pathlib import Path",
        "import random",
        "from time import time_ns",
        "from eventsourcing.persistence import Recorder",
        "import eventsourcing",
    ],
)
def test_scanner_flags_banned_import(source: str, tmp_path: Path) -> None:
    mod = tmp_path / "bad.py"
    mod.write_text(source + "\n")
    with pytest.raises(AssertionError):
        test_imports_only_stdlib_domain_or_eventsourcing_domain(mod)


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.utcnow()",
        "from datetime import date\nx = date.today()",
        "import time\nx = time.monotonic()",
        "import uuid\nx = uuid.uuid4()",
        "from uuid import uuid4\nx = uuid4()",
        "x = open('f')",
    ],
)
def test_scanner_flags_banned_call(source: str, tmp_path: Path) -> None:
    mod = tmp_path / "bad.py"
    mod.write_text(source + "\n")
    with pytest.raises(AssertionError):
        test_no_clock_randomness_or_io_calls(mod)


def test_scanner_allows_pure_imports(tmp_path: Path) -> None:
    mod = tmp_path / "ok.py"
    mod.write_text(
        "from __future__ import annotations\nimport uuid\nfrom decimal import Decimal\n"
        "from domain.values import Side\nfrom eventsourcing.domain import Aggregate\n"
        "x = uuid.UUID(int=1)\n"
    )
    test_imports_only_stdlib_domain_or_eventsourcing_domain(mod)
    test_no_clock_randomness_or_io_calls(mod)
