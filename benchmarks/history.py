"""GPU-fit history benchmark: an hour of samples of a whole fleet, as the operator keeps it.

GPU-fit advice looks at an hour of every workload's GPU samples, so the operator holds that hour in
memory. This fills it for N workloads x G GPUs with one sample per GPU per 30 s pass (default 1,000 x
5 x 120 passes = 600,000 samples) and prints the memory held (tracemalloc) and the time to add one
pass and read a workload's window back, next to a baseline in the same process that keeps one
GpuSample object per sample in a deque (the usual layout).

    .venv/bin/python -m benchmarks.history [--workloads 1000] [--gpus 5] [--passes 120]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `rightsizer` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from rightsizer.core.metrics_view import GpuSample
from rightsizer.core.sample_history import GpuHistory

HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class History(Protocol):
    def add(self, samples: Sequence[GpuSample], now: datetime) -> None: ...

    def samples(self) -> list[GpuSample]: ...


class ObjectDeque:
    """Baseline: every sample an object, the hour in a deque, re-reads skipped by (pod, gpu, time)."""

    def __init__(self, horizon: timedelta) -> None:
        self._horizon = horizon
        self._buf: deque[GpuSample] = deque()
        self._seen: set[tuple[str, str, datetime]] = set()

    def add(self, samples: Sequence[GpuSample], now: datetime) -> None:
        for s in samples:
            key = (s.pod, s.gpu, s.timestamp)
            if key not in self._seen:
                self._seen.add(key)
                self._buf.append(s)
        while self._buf and self._buf[0].timestamp < now - self._horizon:
            old = self._buf.popleft()
            self._seen.discard((old.pod, old.gpu, old.timestamp))

    def samples(self) -> list[GpuSample]:
        return list(self._buf)


def fill(make: Callable[[], History], workloads: int, gpus: int, passes: int) -> dict[str, float]:
    """An hour of passes into one history per workload: held MiB, add and read time per pass."""
    gc.collect()
    tracemalloc.start()
    histories = [make() for _ in range(workloads)]
    pods = [[f"ns-{w % 50}/svc-{w}-{g // 2}" for g in range(gpus)] for w in range(workloads)]
    add_s = 0.0
    for step in range(passes):
        now = T0 + timedelta(seconds=30 * step)
        batch = [
            [
                GpuSample(
                    pod=pods[w][g],
                    gpu=str(g % 2),
                    percent=float((w * 7 + g * 13 + step) % 100),
                    timestamp=now - timedelta(seconds=5),
                    memory_used_mib=float(20000 + (w * g + step) % 4000),
                    power_watts=250.0,
                )
                for g in range(gpus)
            ]
            for w in range(workloads)
        ]
        start = time.perf_counter()
        for history, samples in zip(histories, batch, strict=True):
            history.add(samples, now)
        add_s += time.perf_counter() - start
        del batch
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    for history in histories:
        history.samples()  # what a GPU-fit decision reads
    read_s = time.perf_counter() - start
    count = sum(len(h.samples()) for h in histories[:10]) * workloads / 10
    return {
        "held MiB": held / 2**20,
        "bytes per sample": held / count if count else float("nan"),
        "add ms per pass": add_s / passes * 1000,
        "read ms per pass": read_s * 1000,
        "samples": count,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=5, help="GPUs per workload (5)")
    parser.add_argument("--passes", type=int, default=120, help="30 s passes (120 = one hour)")
    args = parser.parse_args(argv)
    ours = fill(lambda: GpuHistory(HOUR), args.workloads, args.gpus, args.passes)
    base = fill(lambda: ObjectDeque(HOUR), args.workloads, args.gpus, args.passes)
    print(
        f"GPU-fit history: {args.workloads:,} workloads x {args.gpus} GPUs, {args.passes} passes of 30 s "
        f"({ours['samples']:,.0f} samples)"
    )
    print(f"{'':22}{'rightsizer':>12}{'baseline':>12}{'ratio':>8}")
    for key in ("held MiB", "bytes per sample", "add ms per pass", "read ms per pass"):
        ratio = ours[key] / base[key] if base[key] else float("nan")
        print(f"{key:22}{ours[key]:12.1f}{base[key]:12.1f}{ratio:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
