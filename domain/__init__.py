"""marketlog's pure domain: values, instruments, accounts, orders, controls and events.

Nothing here does I/O or reads the clock (ARCHITECTURE rule 4): time, ids and reference
prices are passed in, and every input a decision used is recorded in its event.
"""
