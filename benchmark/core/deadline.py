"""A wall-clock limit on a block of Python code, so one slow part of a long run cannot eat the others' time.

A timer signal (SIGALRM) raises ``TimeLimit`` in the main thread at the next Python instruction after the limit:
a kernel or a compilation already running finishes first, then the block stops. The alternative, a process per
block, would pay torch's import and the device's start-up again for every block, and lose what each one warmed.
"""

import contextlib
import signal
from collections.abc import Iterator


class TimeLimit(Exception):
    """A block ran past its limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``TimeLimit`` inside the block once ``seconds`` have passed (``None``: no limit). Main thread only,
    since only it receives signals; the previous timer handler is restored on the way out."""
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise ValueError(f"a time limit must be positive, not {seconds}")

    def expire(signum, frame):
        raise TimeLimit(f"past its {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def hit_limit(err: BaseException) -> bool:
    """Whether ``err`` is, or was caused by, a ``TimeLimit``: torch.compile wraps what its compiler raises."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, TimeLimit):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False
