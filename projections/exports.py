"""Record exports of the audit trail (SEC Rule 17a-4 as amended in 2022): the records of a
time range and/or an account as JSON lines and as CSV, with a manifest, and the check an
auditor runs on them.

17a-4 asks for an export "in human-readable and machine-usable form" and for automatic
verification of its completeness and accuracy. So:

* ``audit.jsonl``: one record per line, ``payload`` being the stored body *verbatim* (the
  audit trail keeps it as recorded, hash-chain members included), so a line alone is enough
  to recompute the record's hash (infrastructure/codec.py) without this software's help.
* ``audit.csv``: the same records for a spreadsheet, with ``prev_hash`` and ``hash`` as
  columns of their own and the payload as a JSON column.
* ``manifest.json``: the filters, the record count, the first and last position, the SHA-256
  and size of each file, and the store's chain head (position and hash) at export time.
  The head is an anchor published outside the database (COMPLIANCE.md, Records): a store
  rewritten after the export no longer ends in that hash.

An export covers log positions up to ``through`` (the chain head it names): records keep
arriving while it runs, and a bound makes the same request give the same bytes (the API's
streams and the CLI's files are equal byte for byte).

Rows are read in keyset pages by position (``PAGE`` rows a query), never the whole set:
memory stays flat whatever the range.

``verify_export`` (``marketlog export-verify DIR``) checks the files against the manifest's
hashes AND every record against the store: it walks the store's chain from the first record
to the manifest's head (ChainWalker: every record's own hash and every link), re-derives
each selected record from the store exactly as the audit projection does, and compares it
with each file line by line. A one-byte change anywhere is named by file, line and
position; a record missing from a file, or a tampered store row, is named too.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

import orjson
import sqlalchemy as sa

from domain.events import ORDER_EVENTS
from infrastructure import codec
from infrastructure.chain import ChainWalker
from projections.queries import NS_PER_S, iso_timestamp
from projections.recorded import Recorded, decode_notification, key_of
from projections.tables import audit_trail

FORMAT = "marketlog-audit-export/1"
JSONL_NAME, CSV_NAME, MANIFEST_NAME = "audit.jsonl", "audit.csv", "manifest.json"
PAGE = 5_000  # rows per keyset page: a few MB of text at most
CSV_COLUMNS = ("position", "timestamp", "ts_ns", "event_type", "aggregate_id",
               "aggregate_version", "actor", "source", "account_id", "order_id", "prev_hash",
               "hash", "payload")
CSV_HEADER = (",".join(CSV_COLUMNS) + "\n").encode()
NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ORDER_EVENT_NAMES = frozenset(cls.__name__ for cls in ORDER_EVENTS)
# The columns read, in the order every function here takes a row in.
_COLUMNS = ("position", "event_type", "aggregate_id", "aggregate_version", "ts_ns", "actor",
            "source", "account_id", "order_id", "payload")

# ...,"prev_hash":"<64 hex>","hash":"<64 hex>"}: where each hash sits, counted from the end.
_PREV_START, _PREV_END = -(codec.HASH_SUFFIX_LEN + 65), -(codec.HASH_SUFFIX_LEN + 1)

Row = tuple[int, str, str, int, int, str, str, str | None, str | None, str]


# ----------------------------------------------------------------------------- selection


class BadBound(ValueError):
    """A ``from``/``to`` value that is neither a date nor an ISO 8601 time."""


def _is_date(text: str | None) -> bool:
    return text is not None and len(text.strip()) == 10


def parse_bound(text: str, *, end: bool) -> int:
    """Nanoseconds since the epoch of a ``from`` (``end=False``, inclusive) or ``to``
    (``end=True``, exclusive) bound.

    A date (``2026-11-26``) is a whole UTC day: as ``from`` its first instant, as ``to`` the
    first instant of the next day, so ``--from D --to D`` is the day D. A time
    (``2026-11-26T15:30:00Z``; UTC when no offset is given) is used as it is.
    """
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start - _EPOCH) // timedelta(microseconds=1) * 1_000 + (
                NS_PER_DAY if end else 0)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadBound(f"{text!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 time "
                       "(e.g. 2026-11-26T15:30:00Z)") from None
    if moment.tzinfo is None:  # the audit trail is in UTC; a bare time is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000


@dataclass(frozen=True)
class Selection:
    """Which records an export holds: ``since_ns`` <= ts_ns < ``until_ns`` (either open),
    of ``account_id`` if given, at log positions <= ``through``."""

    through: int
    since_ns: int | None = None
    until_ns: int | None = None
    account_id: str | None = None
    from_text: str | None = None  # as the caller wrote them, for the manifest
    to_text: str | None = None

    def selects(self, ts_ns: int, account_id: str | None) -> bool:
        return ((self.since_ns is None or ts_ns >= self.since_ns)
                and (self.until_ns is None or ts_ns < self.until_ns)
                and (self.account_id is None or account_id == self.account_id))

    def filters(self) -> dict[str, Any]:
        return {"from": self.from_text, "to": self.to_text, "account": self.account_id,
                "since_ns": self.since_ns, "until_ns": self.until_ns,
                "through_position": self.through}

    @classmethod
    def of_filters(cls, filters: dict[str, Any]) -> Selection:
        return cls(through=int(filters["through_position"]), since_ns=filters.get("since_ns"),
                   until_ns=filters.get("until_ns"), account_id=filters.get("account"),
                   from_text=filters.get("from"), to_text=filters.get("to"))


def selection(through: int, from_text: str | None = None, to_text: str | None = None,
              account_id: str | None = None) -> Selection:
    """A Selection from the caller's texts; ``BadBound`` naming ``from`` or ``to``, or
    ``ValueError`` when from is after to."""
    since = until = None
    if from_text is not None:
        try:
            since = parse_bound(from_text, end=False)
        except BadBound as exc:
            raise BadBound(f"from: {exc}") from None
    if to_text is not None:
        try:
            until = parse_bound(to_text, end=True)
        except BadBound as exc:
            raise BadBound(f"to: {exc}") from None
    # A date as ``to`` runs through its day: from is after it once from reaches the next day.
    if since is not None and until is not None and (
            since > until or (since == until and _is_date(to_text))):
        raise ValueError(f"from ({from_text}) is after to ({to_text})")
    return Selection(through, since, until, account_id, from_text, to_text)


# ---------------------------------------------------------------------------- reading


def _first_after(conn: sa.Connection, sel: Selection) -> int:
    """Where the first page starts: log order is time order (ARCHITECTURE rule 10), so the
    ts_ns index finds the first record of the range without scanning the log before it."""
    if sel.since_ns is None:
        return 0
    a = audit_trail.c
    first = conn.execute(sa.select(sa.func.min(a.position)).where(
        a.ts_ns >= sel.since_ns)).scalar()
    return 0 if first is None else int(first) - 1


def rows(engine: sa.Engine, sel: Selection, page: int = PAGE) -> Iterator[list[Row]]:
    """The selected audit-trail rows in log order, a keyset page at a time.

    Each page is its own short transaction (rows at or below ``through`` never change, so
    pages need no common snapshot) and the iterator holds one page at a time. Pages are
    fetched with the driver's own cursor: SQLAlchemy's result rows cost more per row than
    rendering them (none of these columns needs a conversion).
    """
    clauses, params = ["position > {m}", "position <= {m}"], [sel.through]
    if sel.since_ns is not None:
        clauses.append("ts_ns >= {m}")
        params.append(sel.since_ns)
    if sel.until_ns is not None:
        clauses.append("ts_ns < {m}")
        params.append(sel.until_ns)
    if sel.account_id is not None:
        clauses.append("account_id = {m}")
        params.append(sel.account_id)  # type: ignore[arg-type]
    with engine.connect() as conn:
        mark = "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM audit_trail WHERE "
               f"{' AND '.join(clauses).format(m=mark)} ORDER BY position LIMIT {int(page)}")
        after = _first_after(conn, sel)
        conn.rollback()
        raw: Any = conn.connection.driver_connection
        while True:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, (after, *params))
                found: list[Row] = cursor.fetchall()
            finally:
                cursor.close()
                raw.rollback()  # end the page's transaction: no long-held snapshot
            if not found:
                return
            yield found
            if len(found) < page:
                return
            after = found[-1][0]


# ---------------------------------------------------------------------------- rendering


def _hashes(payload: str) -> tuple[str, str]:
    """(prev_hash, hash) from the fixed-shape tail of a stored body (codec.py)."""
    return payload[_PREV_START:_PREV_END], payload[-66:-2]


class Stamps:
    """``iso_timestamp`` for rows in log order: the date and time of day are formatted once
    per second (log order is time order), only the nanoseconds per row."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second: int | None = None
        self.prefix = ""

    def __call__(self, ts_ns: int) -> str:
        seconds, nanos = divmod(ts_ns, NS_PER_S)
        if seconds != self.second:
            self.second = seconds
            self.prefix = iso_timestamp(seconds * NS_PER_S)[:-10]
        return f"{self.prefix}{nanos:09d}Z"


def jsonl_line(row: Row, stamp: Callable[[int], str] = iso_timestamp) -> bytes:
    position, kind, aggregate_id, version, ts_ns, actor, source, account, order, payload = row
    return orjson.dumps({
        "position": position, "timestamp": stamp(ts_ns), "ts_ns": ts_ns,
        "event_type": kind, "aggregate_id": aggregate_id, "aggregate_version": version,
        "actor": actor, "source": source, "account_id": account, "order_id": order,
        # Verbatim: the stored body's bytes, so the line carries what the record hash covers.
        "payload": orjson.Fragment(payload),
    }) + b"\n"


_QUOTE, _QUOTES = '"', '""'


def _cell(value: str | None) -> str:
    """A CSV field as the csv module writes it with QUOTE_MINIMAL (and a carriage return
    quoted too), done with str methods: csv.writer spent ~35 us a row doubling the quotes
    of the JSON payload one character at a time."""
    if value is None:
        return ""
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_lines(page: list[Row], stamp: Callable[[int], str] = iso_timestamp) -> bytes:
    out = []
    for position, kind, aggregate_id, version, ts_ns, actor, source, account, order, \
            payload in page:
        prev_hash, own_hash = _hashes(payload)
        # event_type (a class name), aggregate_id and order_id (UUIDs) and source (an enum
        # value) never need quoting; the texts a person chose (actor, account) may.
        out.append(f"{position},{stamp(ts_ns)},{ts_ns},{kind},{aggregate_id},"
                   f"{version},{_cell(actor)},{source},{_cell(account)},{order or ''},"
                   f"{prev_hash},{own_hash},{_QUOTE}{payload.replace(_QUOTE, _QUOTES)}"
                   f"{_QUOTE}\n")  # the payload is JSON: always quoted
    return "".join(out).encode()


def jsonl_chunks(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    stamp = Stamps()
    for page in pages:
        yield b"".join([jsonl_line(row, stamp) for row in page])


def csv_chunks(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    stamp = Stamps()
    yield CSV_HEADER
    for page in pages:
        yield csv_lines(page, stamp)


# ----------------------------------------------------------------------------- manifest


@dataclass
class _FileSum:
    sha256: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def add(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.size += len(chunk)

    def entry(self, records: int) -> dict[str, Any]:
        return {"sha256": self.sha256.hexdigest(), "bytes": self.size, "records": records}


@dataclass(frozen=True)
class ChainHead:
    position: int
    hash: str


def chain_head(store: Any, at: int | None = None) -> ChainHead:
    """The store's head (or its record at ``at``) now: position and the hash stored in it.
    Read from the database, not from a writer's memory, so any process may ask."""
    recorder = store.recorder
    position = (recorder.max_notification_id() or 0) if at is None else at
    if position == 0:
        return ChainHead(0, codec.GENESIS_HASH)
    notes = recorder.select_notifications(start=position, limit=1)
    if not notes or notes[0].id != position:
        raise LookupError(f"the store holds no record at position {position}")
    return ChainHead(position, codec.stored_hash(bytes(notes[0].state)))


def _manifest(sel: Selection, head: ChainHead, store_id: str, records: int,
              first: int | None, last: int | None, jsonl: _FileSum,
              csv_sum: _FileSum) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "store_id": store_id,
        "chain_head": {"position": head.position, "hash": head.hash},
        "filters": sel.filters(),
        "records": records,
        "first_position": first,
        "last_position": last,
        "files": {JSONL_NAME: jsonl.entry(records), CSV_NAME: csv_sum.entry(records)},
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"


def build_manifest(engine: sa.Engine, sel: Selection, head: ChainHead,
                   store_id: str) -> dict[str, Any]:
    """The manifest of an export without writing it (the API's ``/exports/manifest``):
    both renderings are hashed as they stream, page by page."""
    return _export(engine, sel, head, store_id, None)


def write_export(engine: sa.Engine, sel: Selection, head: ChainHead, store_id: str,
                 out: Path) -> dict[str, Any]:
    """Write audit.jsonl, audit.csv and manifest.json into ``out``; the manifest. The files
    are written under temporary names and renamed once complete, manifest last: a crash
    leaves no manifest that vouches for a partial file."""
    out.mkdir(parents=True, exist_ok=True)
    return _export(engine, sel, head, store_id, out)


def _export(engine: sa.Engine, sel: Selection, head: ChainHead, store_id: str,
            out: Path | None) -> dict[str, Any]:
    jsonl, csv_sum = _FileSum(), _FileSum()
    records, first, last = 0, None, None
    with ExitStack() as stack:
        files = None if out is None else (
            stack.enter_context(_durable(out / (JSONL_NAME + ".part"))),
            stack.enter_context(_durable(out / (CSV_NAME + ".part"))))
        csv_sum.add(CSV_HEADER)
        if files:
            files[1].write(CSV_HEADER)
        stamp = Stamps()
        for page in rows(engine, sel):
            j = b"".join([jsonl_line(row, stamp) for row in page])
            c = csv_lines(page, stamp)
            jsonl.add(j)
            csv_sum.add(c)
            if files:
                files[0].write(j)
                files[1].write(c)
            if first is None:
                first = page[0][0]
            last = page[-1][0]
            records += len(page)
    manifest = _manifest(sel, head, store_id, records, first, last, jsonl, csv_sum)
    if out is not None:
        os.replace(out / (JSONL_NAME + ".part"), out / JSONL_NAME)
        os.replace(out / (CSV_NAME + ".part"), out / CSV_NAME)
        with _durable(out / (MANIFEST_NAME + ".part")) as f:
            f.write(manifest_bytes(manifest))
        os.replace(out / (MANIFEST_NAME + ".part"), out / MANIFEST_NAME)
    return manifest


@contextmanager
def _durable(path: Path) -> Iterator[BinaryIO]:
    """A file written and flushed to disk before it is renamed into place."""
    with open(path, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------- the projection's row again


def audit_row(r: Recorded) -> Row:
    """The audit_trail row the audit projection (projections/audit.py) writes for a stored
    record; kept equal to it by tests/unit/test_exports.py. Verification derives each
    expected line from the store through this, never from the read model under test."""
    event = r.event
    kind = type(event)
    key = key_of(r)
    return (r.position, kind.__name__, key, event[1], event.ts_ns, event.actor, event.source,
            getattr(event, "account_id", None), key if kind in ORDER_EVENTS else None,
            orjson.dumps(r.body).decode())


# ---------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Finding:
    """One problem, named: the file and line (1-based) and the log position concerned."""

    detail: str
    file: str | None = None
    line: int | None = None
    position: int | None = None

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file + (f" line {self.line}" if self.line is not None else ""))
        if self.position is not None:
            where.append(f"position {self.position}")
        return (f"{', '.join(where)}: " if where else "") + self.detail


@dataclass
class Verification:
    ok: bool = True
    records: int = 0  # records of the files checked against the store
    store_records: int = 0  # store records walked (the chain up to the manifest's head)
    findings: list[Finding] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    def add(self, finding: Finding) -> None:
        self.ok = False
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)


MAX_FINDINGS = 200


def _fields_jsonl(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    payload = value.get("payload")
    # Compared as the stored text: the payload's bytes are what the record hash covers.
    start = raw.find(b'"payload":')
    if start >= 0 and isinstance(payload, dict):
        value["payload"] = raw[start + 10:raw.rstrip(b"\n").rfind(b"}")].decode(
            "utf-8", "replace")
    return value


def _fields_csv(raw: bytes) -> dict[str, Any] | None:
    try:
        [cells] = list(csv.reader([raw.decode("utf-8", "replace").rstrip("\n")]))
    except (csv.Error, ValueError):
        return None
    if len(cells) != len(CSV_COLUMNS):
        return None
    return dict(zip(CSV_COLUMNS, cells, strict=True))


def _expected_fields(row: Row, csv_form: bool) -> dict[str, Any]:
    position, kind, aggregate_id, version, ts_ns, actor, source, account, order, payload = row
    fields: dict[str, Any] = {
        "position": position, "timestamp": iso_timestamp(ts_ns), "ts_ns": ts_ns,
        "event_type": kind, "aggregate_id": aggregate_id, "aggregate_version": version,
        "actor": actor, "source": source, "account_id": account, "order_id": order,
        "payload": payload}
    if csv_form:
        fields["prev_hash"], fields["hash"] = _hashes(payload)
        fields = {k: "" if v is None else str(v) for k, v in fields.items()}
    return fields


class _FileCursor:
    """Lines of one exported file, read lazily, compared in order with the store's records."""

    def __init__(self, path: Path, name: str, csv_form: bool, report: Verification) -> None:
        self.name, self.csv_form, self.report = name, csv_form, report
        self.handle = open(path, "rb")  # noqa: SIM115  closed by close()
        self.line_no = 0
        self.pending: bytes | None = None
        self.matched = 0
        if csv_form:
            header = self.handle.readline()
            self.line_no = 1
            if header != CSV_HEADER:
                report.add(Finding(f"the header is not {CSV_HEADER.decode().strip()!r}",
                                   name, 1))
        self._advance()

    def _advance(self) -> None:
        raw = self.handle.readline()
        if raw:
            self.line_no += 1
            self.pending = raw
        else:
            self.pending = None

    def _parse(self, raw: bytes) -> dict[str, Any] | None:
        return _fields_csv(raw) if self.csv_form else _fields_jsonl(raw)

    def _position_and_hash(self, raw: bytes) -> tuple[int | None, str | None]:
        fields = self._parse(raw)
        if fields is None:
            return None, None
        try:
            position = int(fields.get("position"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            position = None
        payload = fields.get("payload")
        own = _hashes(payload)[1] if isinstance(payload, str) and len(payload) > 146 else None
        return position, own

    def expect(self, row: Row, expected: bytes) -> None:
        """The next line must be ``expected`` (the record at ``row``'s position)."""
        position = row[0]
        while True:
            raw = self.pending
            if raw is None:
                self.report.add(Finding(
                    "missing: the store holds this record and the export's filters select it, "
                    "but the file ends before it", self.name, self.line_no + 1, position))
                return
            if raw == expected:
                self.matched += 1
                self._advance()
                return
            found, own_hash = self._position_and_hash(raw)
            same_record = own_hash is not None and own_hash == _hashes(row[9])[1]
            if found is None or found == position or same_record:
                self.report.add(Finding(self._difference(raw, row), self.name, self.line_no,
                                        position))
                self._advance()
                return
            if found > position:
                self.report.add(Finding(
                    f"missing: the store holds this record and the export's filters select "
                    f"it, but the file goes on at line {self.line_no} with position {found}",
                    self.name, self.line_no, position))
                return
            self.report.add(Finding(
                "not a record of this export: the filters select no store record here, the "
                f"next one being position {position} (a record added or repeated)",
                self.name, self.line_no, found))
            self._advance()

    def _difference(self, raw: bytes, row: Row) -> str:
        fields = self._parse(raw)
        if fields is None:
            return ("changed: the line is no longer a well-formed "
                    + ("CSV row" if self.csv_form else "JSON record"))
        expected = _expected_fields(row, self.csv_form)
        differ = [k for k, v in expected.items() if fields.get(k) != v]
        extra = sorted(set(fields) - set(expected))
        parts = []
        for name in differ:
            if name == "payload":
                parts.append("payload (the stored body: " + _payload_verdict(fields) + ")")
            else:
                parts.append(f"{name} ({_short(fields.get(name))} in the file, "
                             f"{_short(expected[name])} in the store)")
        if extra:
            parts.append(f"unexpected fields {extra}")
        if not parts:  # same values, other bytes (spacing, key order, escapes)
            parts.append("its bytes differ from the export's rendering of the same values")
        return "changed: differs from the store's record in " + "; ".join(parts)

    def finish(self) -> None:
        while self.pending is not None:
            found, _ = self._position_and_hash(self.pending)
            self.report.add(Finding(
                "not a record of this export: no selected store record is left for it",
                self.name, self.line_no, found))
            self._advance()

    def close(self) -> None:
        self.handle.close()


def _payload_verdict(fields: dict[str, Any]) -> str:
    """Whether the file's record still hashes to the hash it carries: tells a record edited
    in the file from a file that kept the original while the store's record changed."""
    try:
        check = recompute_hash(int(fields["position"]), str(fields["event_type"]),
                               str(fields["aggregate_id"]), int(fields["aggregate_version"]),
                               str(fields["payload"]))
    except (KeyError, TypeError, ValueError):
        return "the line's columns no longer describe a record"
    if check.intact:
        return "the file's record still matches its own hash, so the store's record differs"
    return "its record hash no longer matches its content"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_manifest(directory: Path, report: Verification) -> dict[str, Any] | None:
    path = directory / MANIFEST_NAME
    try:
        manifest = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        report.add(Finding("missing: an export directory holds manifest.json", MANIFEST_NAME))
        return None
    except orjson.JSONDecodeError as exc:
        report.add(Finding(f"not valid JSON ({exc})", MANIFEST_NAME))
        return None
    try:
        if manifest["format"] != FORMAT:
            report.add(Finding(f"format {manifest['format']!r} is not {FORMAT!r}",
                               MANIFEST_NAME))
            return None
        Selection.of_filters(manifest["filters"])
        int(manifest["chain_head"]["position"])
        str(manifest["chain_head"]["hash"])
        for name in (JSONL_NAME, CSV_NAME):
            str(manifest["files"][name]["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        report.add(Finding(f"not a manifest of this format (missing or bad {exc})",
                           MANIFEST_NAME))
        return None
    return manifest  # type: ignore[no-any-return]


def verify_export(directory: Path, store: Any, batch: int = 10_000) -> Verification:
    """Check an export directory against its manifest and against the store (see the module
    docstring). Every problem found is reported, each naming where it is."""
    report = Verification()
    manifest = read_manifest(directory, report)
    if manifest is None:
        return report
    report.manifest = manifest
    for name in (JSONL_NAME, CSV_NAME):
        path = directory / name
        if not path.exists():
            report.add(Finding("missing: the manifest lists this file", name))
            continue
        digest, size = file_sha256(path)
        expected = manifest["files"][name]
        if digest != expected["sha256"] or size != expected.get("bytes"):
            report.add(Finding(
                f"its SHA-256 {digest[:16]}... ({size} bytes) is not the manifest's "
                f"{str(expected['sha256'])[:16]}... ({expected.get('bytes')} bytes): the file "
                "was changed (the records concerned are named below)", name))
    if not report.ok and not all((directory / n).exists() for n in (JSONL_NAME, CSV_NAME)):
        return report
    sel = Selection.of_filters(manifest["filters"])
    head = manifest["chain_head"]
    cursors = [_FileCursor(directory / JSONL_NAME, JSONL_NAME, False, report),
               _FileCursor(directory / CSV_NAME, CSV_NAME, True, report)]
    walker = ChainWalker()
    selected = 0
    first = last = None
    try:
        after = 0
        stop = sel.through
        while after < stop:
            notes = store.recorder.select_notifications(
                start=after, limit=batch, stop=stop, inclusive_of_start=False)
            if not notes:
                break
            records = [(n.id, n.topic, n.originator_id, n.originator_version, bytes(n.state))
                       for n in notes]
            walker.feed(records)
            for position, topic, _oid, _version, state in records:
                try:
                    body = orjson.loads(state)
                    chosen = sel.selects(body["ts_ns"], body.get("account_id"))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    chosen = True  # a damaged record: compare it, so the files name it too
                if not chosen:
                    continue
                try:
                    row = audit_row(decode_notification(position, topic, state))
                except codec.UndecodableEvent as exc:
                    report.add(Finding(f"the store's record cannot be decoded: {exc}",
                                       position=position))
                    continue
                selected += 1
                first = position if first is None else first
                last = position
                cursors[0].expect(row, jsonl_line(row))
                cursors[1].expect(row, csv_lines([row]))
            after = records[-1][0]
        for cursor in cursors:
            cursor.finish()
    finally:
        for cursor in cursors:
            cursor.close()
    report.store_records = walker.count
    report.records = min(c.matched for c in cursors)
    for problem in walker.problems:
        report.add(Finding(f"the store's chain is broken: {problem.detail}",
                           position=problem.position))
    if walker.position != int(head["position"]):
        report.add(Finding(
            f"the store ends at position {walker.position}, before the chain head "
            f"{head['position']} the manifest names: records were removed from the store",
            MANIFEST_NAME, position=walker.position + 1))
    elif walker.hash != head["hash"]:
        report.add(Finding(
            f"the store's record hashes to {walker.hash[:16]}..., the manifest's chain head "
            f"says {str(head['hash'])[:16]}...: the chain was rewritten since the export",
            MANIFEST_NAME, position=walker.position))
    for key, value in (("records", selected), ("first_position", first),
                       ("last_position", last)):
        if manifest.get(key) != value:
            report.add(Finding(f"{key} is {manifest.get(key)!r}; the store's records that the "
                               f"filters select give {value!r}", MANIFEST_NAME))
    return report


def recompute_hash(position: int, event_type: str, aggregate_id: str, version: int,
                   payload: str) -> codec.RecordCheck:
    """A record's own hash recomputed from its audit-trail columns and stored body, as the
    store's verification does (infrastructure/codec.py ``check_record``)."""
    return codec.check_record(position, codec.TOPIC_PREFIX + event_type, UUID(aggregate_id),
                              version, payload.encode())
