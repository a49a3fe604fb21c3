"""Random (version 4) UUIDs, many at a time."""

import os
import uuid

# uuid.uuid4()'s bits: the variant (10) and the version (4) over 122 random ones.
_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_SET = (0x8000 << 48) | (4 << 76)


def uuid4s(n: int) -> list[uuid.UUID]:
    """`n` uuid.uuid4() values from one os.urandom call: a status-change log needs one per
    event, and a getrandom syscall per id was most of uuid4's cost (docs/performance.md)."""
    raw = os.urandom(16 * n)
    return [
        uuid.UUID(int=(int.from_bytes(raw[i : i + 16]) & _KEEP) | _SET)
        for i in range(0, 16 * n, 16)
    ]
