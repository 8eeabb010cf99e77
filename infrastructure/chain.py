"""Verification of the event store's hash chain: what ``verify`` reports, record by record.

Every stored record carries its own whole-record hash and the hash of its predecessor
(infrastructure/codec.py). Walking the log in position order tells apart (issue 5, item 6):
  * a record that was changed in place: its own hash no longer matches ("record 22 was
    changed"; topic / originator id / version changes are named when the body shows them);
  * a record that was replaced by a self-consistent forgery: its own hash matches but the
    next record's link does not ("record 22 was replaced");
  * removed records: positions are contiguous by construction, so a hole is a removal
    ("positions 40-45 missing");
  * a cut-off tail or a recomputed chain: only an anchor outside the database shows these
    (infrastructure/anchors.py): the store ends below an anchored position, or the record at
    an anchored position hashes differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from infrastructure import codec
from infrastructure.anchors import AnchorEntry

MAX_PROBLEMS = 100  # a wholesale rewrite need not be listed record by record


@dataclass(frozen=True)
class ChainProblem:
    kind: str  # changed | replaced | missing | truncated | rewritten | malformed | anchor
    position: int  # the record named (first missing position for "missing")
    detail: str
    last_position: int | None = None  # for "missing": the last missing position

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class ChainCheck:
    """Outcome of a verification. ``head_position``/``head_hash``: the last record read and
    the hash stored in it; ``events``: records checked by this run (after ``checked_from``
    for an incremental run); ``first_broken_position``/``problem``: the first problem."""

    ok: bool
    events: int
    head_position: int
    head_hash: str
    first_broken_position: int | None = None
    problem: str | None = None
    problems: tuple[ChainProblem, ...] = ()
    # How the result was reached, not what it says: excluded from equality.
    anchors_checked: int = field(default=0, compare=False)
    checked_from: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ChainStatus:
    """The store's latest knowledge of its chain, cheap to read (``/health``)."""

    ok: bool
    verified_position: int  # the chain is known good up to here
    head_position: int
    problem: str | None = None
    at_ns: int = 0


@dataclass
class ChainWalker:
    """Walks records in position order from a known-good (position, hash)."""

    position: int = 0
    hash: str = codec.GENESIS_HASH
    wanted: set[int] = field(default_factory=set)  # anchored positions: remember hashes
    count: int = 0
    anchors_checked: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    seen: dict[int, str] = field(default_factory=dict)  # anchored positions walked -> hash

    def problem(self, p: ChainProblem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(p)

    def feed(self, rows: Iterable[tuple[int, str, UUID, int, bytes]]) -> None:
        wanted = self.wanted
        for position, topic, originator_id, version, state in rows:
            expected = self.position + 1
            gap = position != expected
            if gap:
                if position > expected:
                    last = position - 1
                    span = (f"position {expected}" if last == expected
                            else f"positions {expected}-{last}")
                    self.problem(ChainProblem(
                        "missing", expected,
                        f"{span} missing: records were removed from the log", last))
                else:  # cannot happen with an ordered read; keep the walker honest
                    self.problem(ChainProblem("malformed", position,
                                              f"record {position} out of order"))
            check = codec.check_record(position, topic, originator_id, version, state)
            if not check.shape_ok:
                self.problem(ChainProblem(
                    "changed", position,
                    f"record {position} was changed: its stored hash is missing or malformed "
                    f"({codec.diagnose(topic, originator_id, version, state)})"))
            elif not check.intact:
                self.problem(ChainProblem(
                    "changed", position,
                    f"record {position} was changed: "
                    f"{codec.diagnose(topic, originator_id, version, state)}"))
            elif not gap and check.prev_hash != self.hash:
                self.problem(ChainProblem(
                    "replaced", self.position,
                    f"record {self.position} was replaced or removed: record {position} is "
                    f"chained to {str(check.prev_hash)[:16]}..., but the record stored at "
                    f"{self.position} hashes to {self.hash[:16]}..."))
            if wanted and position in wanted:
                self.seen[position] = check.stored
            self.position, self.hash = position, check.stored or check.computed
            self.count += 1

    def finish_anchors(self, entries: Iterable[AnchorEntry], head: int,
                       stored_at: dict[int, str]) -> None:
        """Compare every anchor entry with the log: beyond the head means the tail was cut off;
        a different stored hash means the chain was rewritten. Hashes come from the walk
        (``seen``) or, for records verified earlier, from ``stored_at`` (looked up by the
        caller)."""
        reported: set[int] = set()
        beyond: AnchorEntry | None = None
        for entry in entries:
            if entry.position < 1:
                self.problem(ChainProblem("anchor", 0,
                                          f"anchor has a damaged line: {entry.hash!r}"))
                continue
            if entry.position > head:
                if beyond is None or entry.position > beyond.position:
                    beyond = entry
                continue
            stored = self.seen.get(entry.position) or stored_at.get(entry.position)
            if stored is None:  # a hole, reported as missing by the walk
                continue
            self.anchors_checked += 1
            if stored != entry.hash and entry.position not in reported:
                reported.add(entry.position)
                self.problem(ChainProblem(
                    "rewritten", entry.position,
                    f"record {entry.position} differs from the head anchored when it was "
                    f"committed (anchored hash {entry.hash[:16]}..., stored {stored[:16]}...):"
                    " the chain was rewritten from here or earlier"))
        if beyond is not None:
            self.problem(ChainProblem(
                "truncated", head + 1,
                f"the log ends at position {head} but position {beyond.position} was "
                f"committed (anchored at {beyond.at_ns} ns): the tail was deleted",
                beyond.position))

    def result(self, checked_from: int) -> ChainCheck:
        problems = tuple(sorted(self.problems, key=lambda p: p.position))
        first = problems[0] if problems else None
        return ChainCheck(
            ok=not problems, events=self.count, head_position=self.position,
            head_hash=self.hash,
            first_broken_position=first.position if first else None,
            problem=first.detail if first else None, problems=problems,
            anchors_checked=self.anchors_checked, checked_from=checked_from)
