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
_new = object.__new__
# UUID's slot setters, called directly: ~30% cheaper than object.__setattr__ (UUID itself
# refuses attribute assignment).
_set_int = UUID.__dict__["int"].__set__
_set_safe = UUID.__dict__["is_safe"].__set__
_UNKNOWN = SafeUUID.unknown


def id_factory() -> Callable[[], UUID]:
    prefix = secrets.randbits(58)
    # prefix bits land around the version/variant fields: 48 above, 10 between them
    high = ((prefix >> 10) << 80) | ((prefix & 0x3FF) << 66) | _VERSION_4
    counter = itertools.count(1)

    def new_id() -> UUID:
        uid = _new(UUID)
        _set_int(uid, high | next(counter))  # counter fills the low 62 bits
        _set_safe(uid, _UNKNOWN)
        return uid

    return new_id


def uuid_from_text(text: str) -> UUID:
    """``UUID(text)`` for the canonical 36-character form, ~4x faster (replay decodes one or
    two per event); anything else goes through ``UUID`` and its checks."""
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" \
            or text[23] != "-":
        return UUID(text)
    value = int(text.replace("-", ""), 16)  # ValueError on anything but hex digits
    uid = _new(UUID)
    _set_int(uid, value)
    _set_safe(uid, _UNKNOWN)
    return uid
