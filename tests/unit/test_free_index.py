"""The free-capacity index: skipping blocks by their maxima finds the node a plain walk finds."""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence

import pytest

from rightsizer.core import free_index
from rightsizer.core.binpack import Constraints, Request, ResourceSpace, Simulation
from rightsizer.core.free_index import Entry, FreeIndex
from rightsizer.core.snapshot import Pod
from rightsizer.core.snapshot_parsing import snapshot_from_document
from tests.unit.planner_builders import cpu_node, gpu_node, kube_list, pod

pytestmark = pytest.mark.unit

NOWHERE: Entry = (sys.maxsize, 0, 0)
DIMS = 4  # pods, cpu, memory, gpus


def walk(
    entries: Sequence[Entry],
    free: Sequence[Sequence[int]],
    need: int,
    rest: Sequence[tuple[int, int]],
    below: Entry = NOWHERE,
) -> list[Entry]:
    """The reference: every entry in sorted order, kept if it fits."""
    return [
        e
        for e in sorted(entries)
        if (need,) <= e < below and all(free[e[2]][d] >= amount for d, amount in rest)
    ]


def found(
    index: FreeIndex, need: int, rest: Sequence[tuple[int, int]], below: Entry = NOWHERE
) -> list[Entry]:
    # fitting() may go up to one block past `below`; the caller stops at the first entry there.
    return [e for e in index.fitting(need, rest, below) if e < below]


@pytest.fixture(params=[1, 2, 3, 16])
def block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Tiny blocks put block boundaries, splits and emptied blocks everywhere."""
    size: int = request.param
    monkeypatch.setattr(free_index, "BLOCK", size)
    return size


def random_request(rng: random.Random, sorted_dim: int) -> tuple[int, list[tuple[int, int]]]:
    rest = [(d, rng.randint(0, 6)) for d in range(DIMS) if d != sorted_dim and rng.random() < 0.8]
    rng.shuffle(rest)
    return rng.randint(0, 6), rest


@pytest.mark.parametrize("seed", range(12))
def test_skipping_blocks_finds_what_a_plain_walk_finds_through_adds_removals_and_updates(
    block: int, seed: int
) -> None:
    rng = random.Random(seed)
    nodes = rng.randint(1, 80)
    dim = rng.randrange(DIMS)
    # Few distinct values: many entries equal on the sort key, ranks tied too (the node decides).
    free = [[rng.randint(0, 6) for _ in range(DIMS)] for _ in range(nodes)]
    rank = [rng.randint(0, 3) for _ in range(nodes)]

    def entry(n: int) -> Entry:
        return (free[n][dim], rank[n], n)

    inside = {n for n in range(nodes) if rng.random() < 0.7}
    index = FreeIndex(dim, free, (entry(n) for n in inside))
    for _ in range(300):
        op = rng.random()
        n = rng.randrange(nodes)
        if op < 0.2 and n not in inside:
            index.add(entry(n))
            inside.add(n)
        elif op < 0.35 and n in inside:
            index.remove(entry(n))
            inside.discard(n)
        elif op < 0.7 and n in inside:  # a pod arrives or leaves: out, change the row, back in
            index.remove(entry(n))
            free[n] = [max(0, v + rng.randint(-3, 3)) for v in free[n]]
            index.add(entry(n))
        else:
            need, rest = random_request(rng, dim)
            entries = [entry(m) for m in inside]
            assert list(index) == sorted(entries)
            assert found(index, need, rest) == walk(entries, free, need, rest)
            below = entry(rng.randrange(nodes))
            assert found(index, need, rest, below) == walk(entries, free, need, rest, below)


def test_an_empty_index_finds_nothing_and_takes_entries_again_after_emptying(block: int) -> None:
    free = [[1, 4, 4, 2], [1, 4, 4, 2]]
    index = FreeIndex(3, free)
    assert found(index, 0, []) == []
    index.add((2, 0, 0))
    index.remove((2, 0, 0))
    assert len(index) == 0
    assert found(index, 0, [(1, 1)]) == []
    index.add((2, 0, 1))
    assert found(index, 1, [(1, 4)]) == [(2, 0, 1)]


def test_one_entry_is_found_only_when_every_amount_fits() -> None:
    index = FreeIndex(3, [[1, 4000, 16, 2]], [(2, 0, 0)])
    assert found(index, 2, [(1, 4000), (2, 16), (0, 1)]) == [(2, 0, 0)]
    assert found(index, 3, [(1, 4000)]) == []  # not enough of the sorted resource
    assert found(index, 1, [(1, 4001)]) == []
    assert found(index, 1, [(2, 17)]) == []


def test_blocks_without_room_are_passed_and_the_first_fit_after_them_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(free_index, "BLOCK", 4)
    # Blocks of four: CPU but no memory, memory but no CPU, then the fit in a block's last entry.
    free = [[1, 8, 0, 1]] * 4 + [[1, 0, 8, 1]] * 4 + [[1, 0, 0, 1]] * 3 + [[1, 8, 8, 1]] + [[1, 8, 8, 1]]
    index = FreeIndex(3, free, ((1, 0, n) for n in range(len(free))))
    assert found(index, 1, [(1, 8), (2, 8)]) == [(1, 0, 11), (1, 0, 12)]
    assert found(index, 1, [(1, 8), (2, 8)], below=(1, 0, 12)) == [(1, 0, 11)]
    assert found(index, 1, [(1, 9)]) == []


def test_entries_equal_on_the_sort_key_come_in_rank_then_node_order() -> None:
    free = [[1, 2, 2, 1] for _ in range(5)]
    index = FreeIndex(3, free, [(1, 1, 0), (1, 0, 3), (1, 0, 1), (1, 1, 4), (1, 0, 2)])
    assert found(index, 1, [(1, 1)]) == [(1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 1, 0), (1, 1, 4)]


def test_the_search_starts_at_the_first_entry_with_enough_of_the_sorted_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(free_index, "BLOCK", 2)
    free = [[1, 1, 1, g] for g in (0, 1, 1, 2, 3, 3)]
    index = FreeIndex(3, free, ((free[n][3], 0, n) for n in range(6)))
    assert [e[2] for e in found(index, 1, [])] == [1, 2, 3, 4, 5]  # starts inside a block
    assert [e[2] for e in found(index, 3, [])] == [4, 5]  # at a block's first entry
    assert found(index, 4, []) == []


def test_a_copy_over_a_copied_table_changes_independently() -> None:
    free = [[1, 4, 4, 1], [1, 4, 4, 1]]
    index = FreeIndex(3, free, [(1, 0, 0), (1, 0, 1)])
    assert found(index, 1, [(1, 4)]) == [(1, 0, 0), (1, 0, 1)]  # maxima computed, then shared

    copied = [list(row) for row in free]
    other = index.copy(copied)
    other.remove((1, 0, 0))
    copied[0] = [1, 9, 9, 1]
    other.add((1, 0, 0))
    assert found(other, 1, [(1, 9)]) == [(1, 0, 0)]
    assert found(index, 1, [(1, 9)]) == []
    assert found(index, 1, [(1, 4)]) == [(1, 0, 0), (1, 0, 1)]


# -- the simulation on top of it --------------------------------------------------------------

SHAPES = [(0, "500m", "1Gi"), (0, "4", "16Gi"), (0, "16", "64Gi"), (1, "4", "32Gi"), (2, "16", "96Gi")]
SHAPES += [(1, "1", "1Gi"), (4, "8", "8Gi"), (8, "2", "2Gi"), (0, "100m", "300Gi")]


def fleet(rng: random.Random) -> tuple[Simulation, list[Pod]]:
    items = []
    for i in range(rng.randint(1, 70)):
        labels = {"rack": f"r{rng.randint(1, 3)}"}  # three classes per kind of node
        slots = rng.choice(["3", "110"])  # some nodes run out of pod slots first
        if rng.random() < 0.8:
            gpus = rng.choice([1, 2, 4, 8])
            cpu, memory = str(gpus * rng.choice([4, 12, 24])), f"{gpus * rng.choice([32, 96, 192])}Gi"
            items.append(gpu_node(f"n{i}", gpus=gpus, cpu=cpu, memory=memory, pods=slots, labels=labels))
        else:
            items.append(cpu_node(f"n{i}", cpu=str(rng.choice([8, 32])), pods=slots, labels=labels))
    shapes = [rng.choice(SHAPES) for _ in range(400)]
    items += [pod(f"p-{k}", None, gpus=g, cpu=c, memory=m) for k, (g, c, m) in enumerate(shapes)]
    snapshot = snapshot_from_document(kube_list(*items))
    space = ResourceSpace({k for p in snapshot.pods for k in p.requests})
    rank = list(range(len(snapshot.nodes)))
    rng.shuffle(rank)
    sim = Simulation(
        snapshot.nodes,
        space,
        constraints=[Constraints(pins=(("rack", "r1"),))],  # classes tell the racks apart
        targetable=[True] * len(snapshot.nodes),
        rank=[r // 3 for r in rank],  # ties: the node index decides
    )
    return sim, list(snapshot.pods)


def reference_find(
    sim: Simulation, free: list[list[int]], gone: set[int], request: Request, constraints: Constraints
) -> int | None:
    """The most-allocated node that fits, by a walk over every node of each tier."""
    plain, gpu = sim.feasible_classes(constraints)
    wants_gpu = any(d in sim.space.gpu_dims for d, _ in request)
    primary = sim.space.primary(request)
    for classes in (gpu,) if wants_gpu else (plain, gpu):
        fitting = [
            (free[n][primary], sim.rank[n], n)
            for n in range(len(free))
            if n not in gone
            and sim.node_class[n] in classes
            and all(free[n][d] >= amount for d, amount in request)
        ]
        if fitting:
            return min(fitting)[2]
    return None


@pytest.mark.parametrize("seed", range(8))
def test_the_simulation_finds_the_node_a_walk_over_every_node_finds(block: int, seed: int) -> None:
    rng = random.Random(seed)
    sim, pods = fleet(rng)
    free = [list(c) for c in sim.capacity]  # the test's own books
    suspended: set[int] = set()
    removed: set[int] = set()
    placed: list[tuple[int, Pod]] = []
    anywhere, one_rack = Constraints(), Constraints(pins=(("rack", "r1"),))

    def book(n: int, p: Pod, sign: int) -> None:
        for d, amount in sim.space.request(p.requests):
            free[n][d] += sign * amount

    for step, p in enumerate(pods):
        request = sim.space.request(p.requests)
        constraints = one_rack if step % 5 == 0 else anywhere
        target = sim.find(p, request, constraints)
        assert target == reference_find(sim, free, suspended | removed, request, constraints)
        if target is not None:
            sim.reserve(target, request, p)
            book(target, p, -1)
            placed.append((target, p))
        if placed and rng.random() < 0.3:  # a pod leaves (from a suspended node too)
            n, gone = placed.pop(rng.randrange(len(placed)))
            sim.release(n, sim.space.request(gone.requests), gone)
            book(n, gone, +1)
        if rng.random() < 0.1:
            n = rng.randrange(len(free))
            if n in suspended:
                sim.resume([n])
                suspended.discard(n)
            elif n not in removed:
                sim.suspend([n])
                suspended.add(n)
        if rng.random() < 0.02:
            n = rng.randrange(len(free))
            if n not in removed and all(m != n for m, _ in placed):
                sim.remove_node(n)
                removed.add(n)
                suspended.discard(n)
        if step == 200:  # the rest runs on a fork: it must carry the indexes over
            sim = sim.fork()
