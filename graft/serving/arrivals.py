"""Requests as the server receives them: one ``ServerArrival`` each, or their columns.

What routing (``graft.serving.routing``) hands to whatever serves the requests: the
simulator (``graft.sim.server.simulate_requests``) or the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerArrival:
    """One request reaching the server: when, which plan flow's route it takes (None: no
    route, REJECTED), its deadline (server clock, ms), and an opaque ``tag`` (e.g. the
    client request it came from) that the simulator never reads."""

    arrival_ms: float
    flow: str | None
    deadline_ms: float
    model: str
    partition: int
    tag: Any = None


@dataclass(frozen=True)
class ArrivalColumns:
    """Server arrivals as columns, entry ``i`` holding the fields of ``ServerArrival`` ``i``
    (tags left out): what ``simulate_requests`` reads, built without an object per
    arrival."""

    arrival_ms: list[float]
    flow: list[str | None]
    deadline_ms: list[float]
    model: list[str]
    partition: list[int]

    @classmethod
    def of(cls, arrivals: Sequence[ServerArrival]) -> ArrivalColumns:
        return cls([a.arrival_ms for a in arrivals], [a.flow for a in arrivals],
                   [a.deadline_ms for a in arrivals], [a.model for a in arrivals],
                   [a.partition for a in arrivals])

    def __len__(self) -> int:
        return len(self.arrival_ms)


#: The ``Request.flow`` of an arrival that has no flow (rejected without a route).
UNROUTED = "(unrouted)"
