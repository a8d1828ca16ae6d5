"""The simulator's events: a request arriving at the server, batches starting and ending on
an executor, a request moving on to the next stage of its route, and its completion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from graft.sim.lifecycle import Request, RequestState

if TYPE_CHECKING:
    from graft.sim.server import ServerState

EventList = list["SimEvent"]


def _enqueue(state: ServerState, req: Request) -> EventList:
    """Put ``req`` in the queue of the next stage of its route (join-shortest-queue over
    the stage's executors); wake the executor if it is idle."""
    stage = state.routes[req.flow][req.stage_index]
    index = state.pick_executor(stage)
    ex = state.executors[index]
    ex.enqueue(stage, req)
    req.state = RequestState.QUEUED
    if ex.busy:
        return []
    ex.busy = True
    return [BatchStart(state.now_ms, index)]


@dataclass
class RequestArrival:
    """A request reaches the server; a flow without a route is rejected."""

    time_ms: float
    request: Request

    def handle(self, state: ServerState) -> EventList:
        req = self.request
        if req.flow not in state.routes:
            req.state = RequestState.REJECTED
            return []
        return _enqueue(state, req)


@dataclass
class BatchStart:
    """An executor forms its next batch, or goes idle when every member queue is empty."""

    time_ms: float
    executor: int

    def handle(self, state: ServerState) -> EventList:
        ex = state.executors[self.executor]
        turn = ex.next_turn(state.now_ms, state.drop_late)
        for req in turn.dropped:
            req.state = RequestState.DROPPED
        if turn.stage is None:
            ex.busy = False
            return []
        for req in turn.items:
            req.state = RequestState.RUNNING
        ex.in_flight = len(turn.items)
        end = state.now_ms + state.batch_ms(self.executor, turn.stage, len(turn.items))
        return [BatchEnd(end, self.executor, turn.items)]


@dataclass
class BatchEnd:
    """A batch finishes: its requests move on; the executor takes its next turn."""

    time_ms: float
    executor: int
    items: list[Request]

    def handle(self, state: ServerState) -> EventList:
        state.executors[self.executor].in_flight = 0
        out: EventList = []
        for req in self.items:
            req.stage_index += 1
            if req.stage_index < len(state.routes[req.flow]):
                out.append(Forward(state.now_ms + state.forward_ms, req))
            else:
                out.append(Completion(state.now_ms, req))
        out.append(BatchStart(state.now_ms, self.executor))
        return out


@dataclass
class Forward:
    """A request's activation reaches the next stage of its route."""

    time_ms: float
    request: Request

    def handle(self, state: ServerState) -> EventList:
        return _enqueue(state, self.request)


@dataclass
class Completion:
    """A request leaves its last stage."""

    time_ms: float
    request: Request

    def handle(self, state: ServerState) -> EventList:
        self.request.state = RequestState.COMPLETED
        self.request.completion_ms = state.now_ms
        return []


SimEvent = RequestArrival | BatchStart | BatchEnd | Forward | Completion
