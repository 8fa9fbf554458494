"""Progress for the slow steps (rendering, judge training, feature extraction): a rich bar on rank 0 of an
interactive terminal, nothing in logs, under pytest or on other torchrun ranks (``XBENCH_PROGRESS=0`` turns
it off everywhere). Model training has its own per-stage bar (``methods.training.stage_progress``)."""

import os
import sys
from collections.abc import Iterable, Iterator


def enabled() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("XBENCH_PROGRESS", "1") != "0" and sys.stdout.isatty()


def track(items: Iterable, description: str, total: int | None = None) -> Iterator:
    """``items``, with a transient bar while they are consumed."""
    if not enabled():
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)
