"""Read models built from the event log: orders, positions/P&L and the audit trail.

Disposable by design (ARCHITECTURE rule 1): any of them can be dropped and rebuilt from the
log with ``projections.rebuild.rebuild`` and must come out with the same digest.
"""
