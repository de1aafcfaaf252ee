"""Profile ids: opaque, never reused, and never splink's cluster_id (which shifts)."""

from __future__ import annotations

import os

import numpy as np

_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
PROFILE_ID_PREFIX = "p_"


def mint_profile_ids(count: int) -> list[str]:
    """``count`` fresh ids, ``p_`` + 16 base32 characters (80 random bits each)."""
    if count <= 0:
        return []
    raw = np.frombuffer(os.urandom(count * 16), dtype=np.uint8) % 32
    chars = _ALPHABET[raw].reshape(count, 16)
    return [PROFILE_ID_PREFIX + s.decode("ascii") for s in chars.view("S16").ravel()]
