"""The request lifecycle shared by the simulator and the runtime.

A request arrives at the server (ARRIVED), waits in a stage queue (QUEUED), runs in a batch
(RUNNING), and moves on to the next stage of its route until it ends in exactly one terminal
state: COMPLETED (on time or late), DROPPED (past its deadline at batch formation when the
batcher drops late requests, or unfinished when a run stops) or REJECTED (its flow has no
route in the plan). The simulator writes only the terminal states (a request in flight there
reads ARRIVED: nothing reads the states in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

#: Tolerance for "on time": float sums of stage times may overshoot a deadline by rounding.
ON_TIME_EPS_MS = 1e-9


class RequestState(Enum):
    ARRIVED = "arrived"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    DROPPED = "dropped"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in (RequestState.COMPLETED, RequestState.DROPPED, RequestState.REJECTED)


@dataclass(eq=False, slots=True)
class Request:
    """One request of one flow; times are server-side milliseconds."""

    id: int
    flow: str
    model: str
    partition: int
    arrival_ms: float
    #: ``arrival_ms`` plus the flow's server budget.
    deadline_ms: float
    #: Index into the request's route of the stage it is at.
    stage_index: int = 0
    completion_ms: float | None = None
    state: RequestState = RequestState.ARRIVED

    @property
    def latency_ms(self) -> float | None:
        """Server-side latency of a completed request."""
        if self.completion_ms is None:
            return None
        return self.completion_ms - self.arrival_ms

    @property
    def on_time(self) -> bool:
        return (self.state is RequestState.COMPLETED and self.completion_ms is not None
                and self.completion_ms <= self.deadline_ms + ON_TIME_EPS_MS)


def on_time_mask(completion_ms: np.ndarray, deadline_ms: np.ndarray) -> np.ndarray:
    """``Request.on_time`` over arrays: ``completion_ms`` is NaN where not completed."""
    return completion_ms <= deadline_ms + ON_TIME_EPS_MS
