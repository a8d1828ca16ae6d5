"""The dynamic batching policy shared by the simulator and the runtime.

An executor (one stage replica, one replica of a time-shared slice, or one GPU of a temporal
plan) serves the queues of its member stages. When it is idle and a queue is non-empty it
takes up to that stage's ``batch`` requests FIFO and runs them at once: it never waits for
a full batch, the policy under which a request spends at most ``2e`` in a stage (it waits
for the batch in progress, then runs in the next). An executor with several members visits
them round-robin, one batch of each non-empty member per turn, skipping empty ones; an idle
executor wakes on an arrival.

With ``drop_late`` a request already past its deadline when a batch forms is dropped
instead of run; by default (off) it runs and counts as a late completion.

Nothing here knows the simulator: items only need a ``deadline_ms``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Generic, Protocol, TypeVar


class HasDeadline(Protocol):
    deadline_ms: float


T = TypeVar("T", bound=HasDeadline)


def take_batch(queue: deque[T], size: int, now_ms: float, drop_late: bool = False
               ) -> tuple[list[T], list[T]]:
    """Pop up to ``size`` items FIFO from ``queue``: (the batch, the items dropped as late)."""
    if not drop_late:
        if len(queue) <= size:
            batch = list(queue)
            queue.clear()
        else:
            batch = list(map(deque.popleft, repeat(queue, size)))  # size pops, in C
        return batch, []
    batch: list[T] = []
    dropped: list[T] = []
    while queue and len(batch) < size:
        item = queue.popleft()
        if item.deadline_ms < now_ms:
            dropped.append(item)
        else:
            batch.append(item)
    return batch, dropped


@dataclass(slots=True)
class Turn(Generic[T]):
    """What an executor runs next: ``items`` of ``stage`` (empty when nothing is queued),
    and the items dropped as late while forming it."""

    stage: str | None
    items: list[T]
    dropped: list[T]


@dataclass(eq=False, slots=True)
class Executor(Generic[T]):
    """One executor taking turns between member stages (one member: a plain replica).

    ``members`` may name a stage twice (two of its replicas on one GPU of a temporal plan):
    the stage then gets two turns per round. ``queued`` counts the items in its queues.
    """

    members: Sequence[str]
    batches: dict[str, int]
    queues: dict[str, deque[T]] = field(default_factory=dict)
    busy: bool = False
    in_flight: int = 0
    queued: int = 0
    _turn: int = 0

    def __post_init__(self) -> None:
        for m in self.members:
            self.queues.setdefault(m, deque())
        self.queued = sum(len(q) for q in self.queues.values())

    def enqueue(self, stage: str, item: T) -> bool:
        """Queue ``item``; True when that wakes the executor (idle until now, busy from now
        on: the caller has it take its next turn)."""
        self.queues[stage].append(item)
        self.queued += 1
        if self.busy:
            return False
        self.busy = True
        return True

    def load(self) -> int:
        """Queued plus running items: the join-shortest-queue measure."""
        return self.queued + self.in_flight

    def next_turn(self, now_ms: float, drop_late: bool = False) -> Turn[T]:
        """The next batch, round-robin over members from where the last turn stopped."""
        n = len(self.members)
        if n == 1:  # a plain replica: no turns to take
            stage = self.members[0]
            items, dropped = take_batch(self.queues[stage], self.batches[stage], now_ms,
                                        drop_late)
            self.queued -= len(items) + len(dropped)
            return Turn(stage if items else None, items, dropped)
        dropped = []
        for k in range(n):
            i = (self._turn + k) % n
            stage = self.members[i]
            queue = self.queues[stage]
            if not queue:
                continue
            items, late = take_batch(queue, self.batches[stage], now_ms, drop_late)
            self.queued -= len(items) + len(late)
            dropped += late
            if items:
                self._turn = (i + 1) % n
                return Turn(stage, items, dropped)
        return Turn(None, [], dropped)
