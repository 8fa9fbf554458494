"""Seeds derived with sha256 of their parts (never Python's salted ``hash()``), so they are the same in every
process and on every machine."""

import hashlib

import numpy as np
import torch


def derive_seed(*parts) -> int:
    """A 63-bit seed from sha256 of the parts joined by ':'."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
