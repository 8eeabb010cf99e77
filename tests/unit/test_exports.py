"""The export format without I/O: rows rendered from stored records exactly as the audit
projection writes them, the hash links in each rendering, and the date/time bounds."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest

from infrastructure import codec
from projections import audit as audit_projection
from projections import exports
from projections.recorded import decode_notification
from tests import builders as b


def stored_records() -> list[Any]:
    """Sample events of every kind, chained as the store chains them, decoded back."""
    out, prev = [], codec.GENESIS_HASH
    for position, event in enumerate([*b.sample_events(), *b.governance_samples()], start=1):
        topic, state, prev = codec.encode_record(event, position, prev)
        out.append((position, topic, state))
    return out


def test_audit_row_is_the_row_the_audit_projection_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification derives each expected line from the store through ``audit_row``: it must
    stay equal to what projections/audit.py writes, for every kind of event."""
    written: list[tuple[Any, ...]] = []
    monkeypatch.setattr(audit_projection, "insert_rows",
                        lambda _conn, _table, _columns, rows: written.extend(rows))
    recorded = [decode_notification(*r) for r in stored_records()]
    audit_projection.AuditView().process(None, recorded)  # type: ignore[arg-type]
    assert [exports.audit_row(r) for r in recorded] == written
    assert len({row[1] for row in written}) >= 10  # many event types covered


def test_each_rendering_carries_the_stored_body_and_its_hash_links() -> None:
    records = stored_records()
    rows = [exports.audit_row(decode_notification(*r)) for r in records]
    prev = codec.GENESIS_HASH
    parsed = list(csv.DictReader(io.StringIO(
        (exports.CSV_HEADER + exports.csv_lines(rows)).decode())))
    for (position, topic, state), row, line in zip(records, rows, parsed, strict=True):
        jsonl = exports.jsonl_line(row)
        assert jsonl.endswith(b',"payload":' + state + b"}\n")  # verbatim
        value = orjson.loads(jsonl)
        assert value["position"] == position and value["event_type"] == topic.split(":")[1]
        check = exports.recompute_hash(position, value["event_type"], value["aggregate_id"],
                                       value["aggregate_version"], state.decode())
        assert check.intact and check.prev_hash == prev
        assert (line["prev_hash"], line["hash"]) == (prev, check.stored)
        assert line["payload"].encode() == state
        prev = check.stored


@pytest.mark.parametrize(("text", "end", "expected"), [
    ("2023-11-14", False, 1_699_920_000 * 10**9),
    ("2023-11-14", True, 1_700_006_400 * 10**9),  # a date as `to` runs through its day
    ("2023-11-14T22:13:20Z", False, b.T0),
    ("2023-11-14T22:13:20", True, b.T0),  # no offset: UTC
    ("2023-11-15T00:13:20.000001+02:00", False, b.T0 + 1_000),
])
def test_bounds(text: str, end: bool, expected: int) -> None:
    assert exports.parse_bound(text, end=end) == expected


@pytest.mark.parametrize("text", ["2023-13-01", "yesterday", "2023-11-14T25:00", ""])
def test_bad_bounds_are_refused(text: str) -> None:
    with pytest.raises(exports.BadBound):
        exports.parse_bound(text, end=False)


def test_from_after_to() -> None:
    assert exports.selection(5, "2023-11-14", "2023-11-14").until_ns == 1_700_006_400 * 10**9
    assert exports.selection(5, "2023-11-14T10:00:00Z", "2023-11-14T10:00:00Z")  # empty, fine
    with pytest.raises(ValueError, match="after"):
        exports.selection(5, "2023-11-15", "2023-11-14")
    with pytest.raises(ValueError, match="after"):
        exports.selection(5, "2023-11-14T10:00:01Z", "2023-11-14T10:00:00Z")
    with pytest.raises(exports.BadBound, match=r"^to:"):
        exports.selection(5, "2023-11-14", "soon")


def test_csv_cells_parse_back_with_the_csv_module() -> None:
    """The CSV is rendered with str methods (speed); any reader must parse it back exactly,
    whatever text a person put in actor or account."""
    [(position, topic, state)] = stored_records()[:1]
    row = exports.audit_row(decode_notification(position, topic, state))
    for actor in ("plain", 'quo"te', "com,ma", "new\nline", "cr\rhere", ""):
        for account in (None, "ACC,1", 'A"B'):
            tricky = (*row[:5], actor, row[6], account, *row[8:])
            text = (exports.CSV_HEADER + exports.csv_lines([tricky])).decode()
            [parsed] = list(csv.DictReader(io.StringIO(text, newline="")))
            assert (parsed["actor"], parsed["account_id"]) == (actor, account or "")
            assert parsed["payload"].encode() == state


def test_stamps_equal_iso_timestamp() -> None:
    from projections.queries import iso_timestamp
    stamp = exports.Stamps()
    for ts in (0, 1, b.T0, b.T0 + 999_999_999, b.T0 + 1_000_000_000, b.T0 - 1, 5 * 10**18):
        assert stamp(ts) == iso_timestamp(ts)
