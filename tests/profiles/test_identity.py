from __future__ import annotations

import re

from profiles.identity import mint_profile_ids


def test_profile_ids_are_opaque_base32_and_unique() -> None:
    ids = mint_profile_ids(50_000)
    assert len(set(ids)) == 50_000
    assert all(re.fullmatch(r"p_[a-z2-7]{16}", i) for i in ids)
    assert mint_profile_ids(0) == []
