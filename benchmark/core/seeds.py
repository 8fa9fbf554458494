"""Seeds derived from names: sha256, never Python's salted ``hash()``."""

import hashlib


def derive_seed(*parts) -> int:
    """A 63-bit seed from sha256 of the parts (never Python's salted ``hash()``)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
