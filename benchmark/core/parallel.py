"""Per-case CPU work (rendering phantom cases, decoding and resizing films) spread over this process's cores.

Each case's result depends on the case alone (phantom seeds its anatomy by case id), so the output is the same
bytes whatever the number of workers; ``map`` keeps the input order.
"""

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

# Below this many items a pool costs more to start (a fresh interpreter per worker) than it saves.
MIN_ITEMS_PER_WORKER = 64


def cpu_workers() -> int:
    """The cores this process may use (``taskset`` and container limits count), shared among the torchrun ranks
    of this machine."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, len(os.sched_getaffinity(0)) // max(1, ranks))


def parallel_map(fn: Callable, items: Sequence, workers: int | None = None) -> Iterator:
    """``map(fn, items)``, lazily and in order, over worker processes where that pays off."""
    workers = min(workers or cpu_workers(), len(items) // MIN_ITEMS_PER_WORKER)
    if workers <= 1:
        yield from map(fn, items)
        return
    # forkserver, not fork: the parent has torch's thread pools, which a forked child must not inherit.
    context = multiprocessing.get_context("forkserver")
    chunk = max(1, min(16, len(items) // (4 * workers)))
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
    try:
        yield from pool.map(fn, items, chunksize=chunk)
    finally:  # also when the caller stops early (a bad case under on_error=raise): drop the queued work
        pool.shutdown(cancel_futures=True)
