"""Order and trade ids: RFC 4122 version-4-shaped UUIDs from a random prefix and a counter.

``uuid.uuid4()`` costs ~1.7 us here (a syscall for 16 random bytes per id), a fifth of the
engine's whole decision budget. A 58-bit random prefix drawn once per engine start plus a
counter gives ids unique across restarts (collision odds ~2^-58 per restart pair) at ~0.3 us.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from uuid import UUID, SafeUUID

_VERSION_4 = (0x4 << 76) | (0b10 << 62)  # version nibble and RFC 4122 variant bits
_new, _set = object.__new__, object.__setattr__


def id_factory() -> Callable[[], UUID]:
    prefix = secrets.randbits(58)
    # prefix bits land around the version/variant fields: 48 above, 10 between them
    high = ((prefix >> 10) << 80) | ((prefix & 0x3FF) << 66) | _VERSION_4
    counter = itertools.count(1)

    def new_id() -> UUID:
        value = high | next(counter)  # counter fills the low 62 bits
        uid = _new(UUID)
        _set(uid, "int", value)
        _set(uid, "is_safe", SafeUUID.unknown)
        return uid

    return new_id
