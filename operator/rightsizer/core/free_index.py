"""The nodes of one class sorted by the free amount of one resource, searched for the first that fits.

A placement search bisects to the first node with enough of the sorted resource and walks on until
every other requested resource fits too. On fragmented fleets that walk passes hundreds of nodes that
have the GPUs but not the CPU or memory. The sorted entries are therefore kept in blocks of a few
dozen, each with an upper bound of the free amount of every resource among its nodes: a block whose
bound on free CPU (or memory, …) is below the request holds no node that fits and is passed in one
check. The other entries are visited in exactly the sorted order, so the first fit is the node a
plain walk finds.
"""

from __future__ import annotations

import sys
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence
from operator import ge

Entry = tuple[int, int, int]  # (free amount of the sorted resource, rank, node): the sort order
Amounts = Sequence[tuple[int, int]]  # sparse (dimension, amount) a node must have free

# Entries per block; a block is split in two when it grows past twice this. Smaller blocks are passed
# more precisely but cost more checks per search: 16 measured best on 5,000-node fleets.
BLOCK = 16


class FreeIndex:
    """Entries sorted by (free amount of ``dim``, rank, node), in blocks with per-block maxima.

    ``free`` is the simulation's free room per node, read, never written. A node's row must not
    change while the node is in the index (take it out, change the row, put it back): the maxima
    are kept from the rows as they were added and removed.
    """

    __slots__ = ("_blocks", "_dim", "_free", "_lasts", "_tops")

    def __init__(self, dim: int, free: Sequence[Sequence[int]], entries: Iterable[Entry] = ()) -> None:
        self._dim = dim
        self._free = free
        ordered = sorted(entries)
        self._blocks = [ordered[i : i + BLOCK] for i in range(0, len(ordered), BLOCK)]
        self._lasts = [block[-1] for block in self._blocks]  # to bisect to the block of an entry
        # Per block: at least the largest free amount in each dimension, or None until a search
        # needs it. Never below the true maximum, so a block is skipped only if nothing in it fits.
        self._tops: list[list[int] | None] = [None] * len(self._blocks)

    def copy(self, free: Sequence[Sequence[int]]) -> FreeIndex:
        """The same entries over another free table (a copy of this one's)."""
        other = FreeIndex.__new__(FreeIndex)
        other._dim = self._dim
        other._free = free
        other._blocks = [list(block) for block in self._blocks]
        other._lasts = list(self._lasts)
        other._tops = list(self._tops)  # never changed in place: add() replaces a block's maxima
        return other

    def __len__(self) -> int:
        return sum(len(block) for block in self._blocks)

    def __iter__(self) -> Iterator[Entry]:
        for block in self._blocks:
            yield from block

    def add(self, entry: Entry) -> None:
        blocks, lasts, tops = self._blocks, self._lasts, self._tops
        if not blocks:
            blocks.append([entry])
            lasts.append(entry)
            tops.append(None)
            return
        b = min(bisect_left(lasts, entry), len(blocks) - 1)
        block = blocks[b]
        insort(block, entry)
        lasts[b] = max(lasts[b], entry)
        top = tops[b]
        if top is not None:
            tops[b] = list(map(max, top, self._free[entry[2]]))
        if len(block) > 2 * BLOCK:
            blocks[b : b + 1] = [block[:BLOCK], block[BLOCK:]]
            lasts.insert(b, block[BLOCK - 1])
            tops[b : b + 1] = [None, None]

    def remove(self, entry: Entry) -> None:
        """Take out an entry that is in the index, its node's free row as it was when added."""
        b = bisect_left(self._lasts, entry)
        block = self._blocks[b]
        del block[bisect_left(block, entry)]
        if not block:
            del self._blocks[b], self._lasts[b], self._tops[b]
            return
        self._lasts[b] = block[-1]
        top = self._tops[b]
        if top is not None and any(map(ge, self._free[entry[2]], top)):
            self._tops[b] = None  # it may have held a maximum: recomputed when next needed

    def fitting(self, need: int, rest: Amounts, below: Entry) -> Iterator[Entry]:
        """In order, the entries with at least ``need`` of the sorted resource free that have every
        amount of ``rest`` free, up to ``below`` (a better fit found elsewhere; one block may go past
        it, the caller stops there)."""
        lasts = self._lasts
        first = bisect_left(lasts, (need,))
        if first == len(lasts):
            return
        stop = min(bisect_left(lasts, below, first) + 1, len(lasts))
        blocks, tops, free = self._blocks, self._tops, self._free
        start = bisect_left(blocks[first], (need,))
        for b in range(first, stop):
            block = blocks[b]
            top = tops[b]
            if top is None:
                top = tops[b] = self._maxima(block)
            for d, amount in rest:
                if top[d] < amount:
                    break
            else:
                for entry in block[start:] if start else block:
                    # The fit check inlined: this loop is the innermost of the planner.
                    room = free[entry[2]]
                    for d, amount in rest:
                        if room[d] < amount:
                            break
                    else:
                        yield entry
            start = 0

    def _maxima(self, block: list[Entry]) -> list[int]:
        free = self._free
        top = [max(column) for column in zip(*(free[e[2]] for e in block), strict=True)]
        # The bisection decides the sorted resource; as "unbounded" its maximum never needs redoing.
        top[self._dim] = sys.maxsize
        return top
