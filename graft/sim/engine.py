"""The discrete-event loop: pop the next event, set the clock, push what it returns.

Events are ordered by ``(time_ms, seq)``: ``seq`` counts pushes, so events at one instant
run in the order they were scheduled. That key is defined here and nowhere else.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, Protocol, TypeVar

S = TypeVar("S", bound="HasClock")
S_contra = TypeVar("S_contra", contravariant=True)


class HasClock(Protocol):
    now_ms: float


class Event(Protocol[S_contra]):
    time_ms: float

    def handle(self, state: S_contra) -> list[Event[S_contra]]:
        """Apply the event to ``state``; return the events it causes."""
        ...


class EventQueue(Generic[S]):
    """A heap of events keyed by (time, push order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Event[S]]] = []
        self._seq = itertools.count()

    def push(self, event: Event[S]) -> None:
        heapq.heappush(self._heap, (event.time_ms, next(self._seq), event))

    def pop(self) -> Event[S]:
        return heapq.heappop(self._heap)[2]

    def peek_time_ms(self) -> float:
        return self._heap[0][0]

    def __len__(self) -> int:
        return len(self._heap)


def run(state: S, queue: EventQueue[S], until_ms: float = float("inf")) -> int:
    """Run events until the queue is empty or the next one is after ``until_ms``; return
    how many ran. ``state.now_ms`` is the time of the last event run."""
    count = 0
    while queue and queue.peek_time_ms() <= until_ms:
        event = queue.pop()
        state.now_ms = event.time_ms
        for new in event.handle(state):
            queue.push(new)
        count += 1
    return count
