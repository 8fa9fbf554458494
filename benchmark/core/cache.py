"""On-disk cache of arrays, keyed by a content hash of everything that produced them.

A key is the sha256 of the canonical JSON of its parts (dataset, case ids, image size, pipeline, renderer
version, ...), so a change to any of them is a new entry and a stale entry is never read. Entries are
written atomically (temp file + rename): an interrupted run leaves no half-written file. ``load_or_compute``
computes an entry once across processes (a lock file per key): rows checked side by side, or runs recorded side
by side, start on the same cold cache and would otherwise each extract the same real images' features.
"""

import contextlib
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.core.io import atomic_write


def cache_root() -> Path:
    """``$XBENCH_CACHE_DIR``, else ``~/.cache/xbench``."""
    return Path(os.environ.get("XBENCH_CACHE_DIR") or Path.home() / ".cache" / "xbench")


def content_key(parts: dict) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load(kind: str, key: str) -> dict[str, np.ndarray] | None:
    path = cache_root() / kind / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError):  # an unreadable entry is a miss; it is rewritten below
        return None


def save(kind: str, key: str, arrays: dict[str, np.ndarray]) -> Path:
    path = cache_root() / kind / f"{key}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())
    return path


def load_or_compute(kind: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The entry ``kind/key``, computed by ``compute()`` and saved on a miss. A process that finds another
    computing the same entry waits for it and reads its result (the lock is the operating system's: a process
    that dies releases it)."""
    hit = load(kind, key)
    if hit is not None:
        return hit
    with _locked(cache_root() / kind / f".{key}.lock"):
        hit = load(kind, key)  # written while this process waited
        if hit is None:
            hit = compute()
            save(kind, key, hit)
    return hit


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
