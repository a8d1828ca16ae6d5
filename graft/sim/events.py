"""The simulator's events, as the handlers of ``ServerState``: a request reaching a stage
(its first: it arrives at the server), and a batch starting and ending on an executor (a
request leaving its last stage completes with its batch's end).

Only terminal states are written (COMPLETED, DROPPED, REJECTED); a request in flight keeps
ARRIVED, since nothing reads the states in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from graft.serving.batching import Executor
from graft.serving.lifecycle import Request, RequestState
from graft.sim.engine import EventLoop

#: One stage of a route: its id, the executors serving it (one per replica), and the
#: hand-off to the route's next stage as (fixed ms, ms per request of the batch) (zeros after
#: the last stage).
Hop = tuple[str, Sequence[Executor[Request]], float, float]
#: ``batch_ms(stage, n)``: the execution time of a batch of ``n`` in ``stage``.
BatchTime = Callable[[str, int], float]

COMPLETED = RequestState.COMPLETED
DROPPED = RequestState.DROPPED
REJECTED = RequestState.REJECTED


@dataclass(eq=False, slots=True)
class ServerState:
    """What events read and change: the loop (its clock), routes, executors, batch times."""

    loop: EventLoop
    #: flow id -> the hops of its route
    routes: dict[str, tuple[Hop, ...]]
    batch_ms: BatchTime
    drop_late: bool = False
    #: Extra time every hand-off between stages takes, beyond the plan's own hand-offs.
    forward_ms: float = 0.0

    def reach(self, req: Request) -> None:
        """A request reaches the next stage of its route (the first: it arrives at the
        server) and joins the shortest queue among the stage's executors (queued plus in
        flight, the first on ties), waking the executor if it is idle; a flow without a
        route is rejected."""
        route = self.routes.get(req.flow)
        if route is None:
            req.state = REJECTED
            return
        stage, executors, _, _ = route[req.stage_index]
        ex = executors[0] if len(executors) == 1 else min(executors, key=Executor.load)
        if ex.enqueue(stage, req):
            self.loop.soon(self.start, ex)

    def start(self, ex: Executor[Request]) -> None:
        """An executor forms its next batch, or goes idle when every member queue is
        empty."""
        if not ex.queued:
            ex.busy = False
            return
        loop = self.loop
        turn = ex.next_turn(loop.now_ms, self.drop_late)
        for req in turn.dropped:
            req.state = DROPPED
        if turn.stage is None:
            ex.busy = False
            return
        n = len(turn.items)
        ex.in_flight = n
        loop.schedule(loop.now_ms + self.batch_ms(turn.stage, n), self.end,
                      (ex, turn.items))

    def end(self, batch: tuple[Executor[Request], list[Request]]) -> None:
        """A batch finishes: its requests move on (after the hand-off of the batch to their
        next stage, ``rules.handoff_ms``) or complete; the executor takes its next turn."""
        ex, items = batch
        ex.in_flight = 0
        loop, routes = self.loop, self.routes
        now = loop.now_ms
        n = len(items)
        for req in items:
            route = routes[req.flow]
            _, _, fixed, per_request = route[req.stage_index]
            req.stage_index += 1
            if req.stage_index < len(route):
                loop.schedule(now + self.forward_ms + fixed + n * per_request, self.reach, req)
            else:
                req.state = COMPLETED
                req.completion_ms = now
        loop.soon(self.start, ex)
