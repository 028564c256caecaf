"""GpuHistory keeps what an object-per-sample buffer would keep, in a fraction of the memory."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rightsizer.core.metrics_view import GpuSample
from rightsizer.core.sample_history import GpuHistory

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def sample(
    pod: str, seconds: float, percent: float = 50.0, gpu: str = "0", memory: float | None = 1000.0
) -> GpuSample:
    return GpuSample(
        pod=pod, gpu=gpu, percent=percent, timestamp=T0 + timedelta(seconds=seconds), memory_used_mib=memory
    )


def test_samples_come_back_exactly_as_read_without_power() -> None:
    history = GpuHistory(HOUR)
    read = [sample("a", 0, 33.3, memory=None), sample("b", 0.001, 99.99, gpu="GPU-1f2e", memory=40536.5)]
    history.add(read, T0)
    assert history.samples() == read
    assert all(s.timestamp.tzinfo is not None for s in history.samples())


def test_a_sample_read_again_is_kept_once() -> None:
    history = GpuHistory(HOUR)
    history.add([sample("a", 0), sample("b", 0)], T0)
    history.add([sample("a", 0), sample("b", 30)], T0 + timedelta(seconds=30))  # a not scraped again
    assert [(s.pod, s.timestamp) for s in history.samples()] == [
        ("a", T0),
        ("b", T0),
        ("b", T0 + timedelta(seconds=30)),
    ]


def test_samples_older_than_the_horizon_go_and_so_do_pods_without_samples() -> None:
    history = GpuHistory(timedelta(minutes=10))
    history.add([sample("old", 0)], T0)
    history.add([sample("new", 600)], T0 + timedelta(minutes=10))
    history.add([sample("new", 660)], T0 + timedelta(minutes=11))
    assert [s.pod for s in history.samples()] == ["new", "new"]
    history.add([sample("old", 700)], T0 + timedelta(minutes=12))  # a name seen again is a new series
    assert [s.pod for s in history.samples()] == ["new", "new", "old"]


def test_at_most_max_samples_the_oldest_go_first() -> None:
    history = GpuHistory(HOUR, max_samples=3)
    history.add([sample(f"p{i}", i) for i in range(5)], T0 + timedelta(seconds=5))
    assert [s.pod for s in history.samples()] == ["p2", "p3", "p4"]


def test_an_hour_of_a_workload_costs_28_bytes_a_sample() -> None:
    history = GpuHistory(HOUR)
    for step in range(120):  # an hour of 30 s passes over 8 GPUs
        at = T0 + timedelta(seconds=30 * step)
        history.add([sample("p", 30 * step, gpu=str(g)) for g in range(8)], at)
    assert len(history) == 960
    assert history.nbytes() == 960 * 28


# A reference: the objects themselves, deduplicated per series by time, trimmed by horizon.
def reference(
    passes: list[tuple[float, list[GpuSample]]], horizon: timedelta, max_samples: int
) -> list[GpuSample]:
    kept: list[GpuSample] = []
    newest: dict[tuple[str, str], datetime] = {}
    for now_s, batch in passes:
        for s in batch:
            key = (s.pod, s.gpu)
            if key in newest and s.timestamp <= newest[key]:
                continue
            newest[key] = s.timestamp
            kept.append(s)
        cutoff = T0 + timedelta(seconds=now_s) - horizon
        drop = 0
        while drop < len(kept) and kept[drop].timestamp < cutoff:
            drop += 1
        kept = kept[max(drop, len(kept) - max_samples) :]
        alive = {(s.pod, s.gpu) for s in kept}
        newest = {k: v for k, v in newest.items() if k in alive}
    return kept


readings = st.builds(
    sample,
    pod=st.sampled_from(["a", "b", "c"]),
    seconds=st.integers(min_value=0, max_value=900),
    percent=st.one_of(st.floats(min_value=-5, max_value=150), st.just(math.nan)),
    gpu=st.sampled_from(["0", "1"]),
    memory=st.one_of(st.none(), st.floats(min_value=0, max_value=81920)),
)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=1200), st.lists(readings, max_size=6)), max_size=12
    ),
    st.integers(min_value=1, max_value=20),
)
def test_matches_an_object_per_sample_reference(
    passes: list[tuple[int, list[GpuSample]]], max_samples: int
) -> None:
    passes = sorted(passes, key=lambda p: p[0])
    history = GpuHistory(timedelta(minutes=5), max_samples=max_samples)
    for now_s, batch in passes:
        history.add(batch, T0 + timedelta(seconds=now_s))
    expected = reference(passes, timedelta(minutes=5), max_samples)
    got = history.samples()
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g.pod, g.gpu, g.timestamp, g.memory_used_mib) == (
            e.pod,
            e.gpu,
            e.timestamp,
            e.memory_used_mib,
        )
        assert g.percent == e.percent or (math.isnan(g.percent) and math.isnan(e.percent))
