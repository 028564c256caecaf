"""CPU time spent inside the edge (API server and metrics calls), per thread.

A reconciliation's own work is its thread's CPU time minus what its adapter calls used (HTTP, TLS,
JSON decoding): that figure does not depend on how slow the API server or Prometheus answers, nor on
how long the thread waited for the interpreter lock, so it is what a workload costs the operator.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class IoTime:
    def __init__(self, clock: Callable[[], float] = time.thread_time) -> None:
        self._clock = clock
        self._local = threading.local()

    def spent(self) -> float:
        """CPU seconds this thread has spent inside timed adapters so far."""
        return float(getattr(self._local, "seconds", 0.0))

    def timed(self, adapter: T) -> T:
        """`adapter` with every method call counted as I/O (attributes pass through unchanged)."""
        return cast(T, _Timed(adapter, self))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs), its CPU time counted as I/O of this thread."""
        started = self._clock()
        try:
            return fn(*args, **kwargs)
        finally:
            self._local.seconds = self.spent() + (self._clock() - started)


class _Timed:
    def __init__(self, adapter: Any, io: IoTime) -> None:
        self._adapter = adapter
        self._io = io

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._adapter, name)
        if not callable(value):
            return value
        return functools.partial(self._io.call, value)
