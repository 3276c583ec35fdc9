"""CPU time of a call, shared by the benchmark scripts of this folder."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["cpu_ms"]


def cpu_ms(repeat: int, call: Callable[..., object], *args: object) -> float:
    """Milliseconds of process CPU time per ``call(*args)``, over ``repeat`` calls after one
    warm-up call (CPU time, not wall time: a busy machine does not inflate it)."""
    call(*args)
    started = time.process_time()
    for _ in range(repeat):
        call(*args)
    return 1e3 * (time.process_time() - started) / repeat
