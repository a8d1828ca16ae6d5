"""The discrete-event loop: take the next event, set the clock, call its handler.

An event is a handler and its argument, due at a time. Events run in the order of
``(time_ms, seq)``, where ``seq`` counts schedulings: events at one instant run in the order
they were scheduled. The arrivals (a time-sorted stream given to ``run``) count as scheduled
before everything else, so at any instant they run first, in stream order. That order is
defined here and nowhere else.

Kept without a heap entry per event: the arrivals are read from their sorted stream as the
clock reaches them, and an event scheduled for the current instant goes to a FIFO of due
events instead of the heap. The FIFO runs after the heap's events of the same instant, which
were all scheduled at an earlier clock, hence earlier: the order above is unchanged.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

#: A handler takes its event's argument; it may schedule more events.
Handler = Callable[[Any], None]


class EventLoop:
    """The clock, the heap of future events keyed (time, seq), and the due FIFO."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        #: The instant being run (NaN outside ``run``: everything scheduled goes to the heap).
        self._instant = math.nan
        self._heap: list[tuple[float, int, Handler, Any]] = []
        self._due: deque[tuple[Handler, Any]] = deque()
        self._seq = itertools.count()

    def schedule(self, time_ms: float, handler: Handler, arg: Any) -> None:
        """Run ``handler(arg)`` at ``time_ms`` (not before the current instant)."""
        if time_ms == self._instant:
            self._due.append((handler, arg))
        else:
            heapq.heappush(self._heap, (time_ms, next(self._seq), handler, arg))

    def soon(self, handler: Handler, arg: Any) -> None:
        """From a handler: run ``handler(arg)`` at the current instant, after the events
        already due."""
        self._due.append((handler, arg))

    def pending(self) -> int:
        """Events scheduled and not run (arrivals not counted)."""
        return len(self._heap) + len(self._due)

    def run(self, arrival_ms: Sequence[float], on_arrival: Handler, arrivals: Sequence[Any],
            until_ms: float = math.inf) -> int:
        """Run ``on_arrival(arrivals[k])`` at ``arrival_ms[k]`` (sorted) and every event
        scheduled meanwhile, up to and including ``until_ms``; return how many ran. After
        it, ``now_ms`` is the instant of the last event run."""
        heap, due, pop = self._heap, self._due, heapq.heappop
        total, k, count = len(arrival_ms), 0, 0
        next_arrival = arrival_ms[0] if total else math.inf
        while k < total or heap:
            now = heap[0][0] if heap and heap[0][0] < next_arrival else next_arrival
            if now > until_ms:
                break
            self.now_ms = self._instant = now
            while next_arrival == now:
                on_arrival(arrivals[k])
                k += 1
                next_arrival = arrival_ms[k] if k < total else math.inf
            while heap and heap[0][0] == now:
                event = pop(heap)
                event[2](event[3])
                count += 1
            while due:
                handler, arg = due.popleft()
                handler(arg)
                count += 1
        self._instant = math.nan
        return count + k
