"""Online re-planning: every ``period_s`` the server plans the arrivals it saw in the last
``window_s`` and, when the simulator's rules say so (``graft.serving.replan.switch_reason``:
a fragment the plan does not route, a stage over its provisioned rate, or a saving beyond the
hysteresis), installs the new plan through the engine's hot swap.

Arrivals are recorded as the frontends receive them (admitted or not: a rejected request is
demand too); the observation turns them into flows exactly as the simulator does
(``graft.serving.observe``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from graft.planner.base import Planner
from graft.runtime.worker import now_ms
from graft.serving.replan import (
    DEFAULT_MAX_UTILIZATION,
    Candidate,
    ReplanConfig,
    Window,
    make_candidate,
    observe,
    switch_reason,
)
from graft.wording import plural

log = logging.getLogger(__name__)

#: Most arrivals kept for the observation window.
MAX_ARRIVALS = 500_000


@dataclass(frozen=True, slots=True)
class Arrival:
    """A request as the server received it (``graft.serving.observe.Arriving``)."""

    model: str
    partition: int
    arrival_ms: float
    budget_ms: float


class ArrivalLog:
    """The most recent arrivals, thread-safe."""

    def __init__(self, limit: int = MAX_ARRIVALS) -> None:
        self._items: deque[Arrival] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def add(self, model: str, partition: int, budget_ms: float) -> None:
        with self._lock:
            self._items.append(Arrival(model, partition, now_ms(), budget_ms))

    def since(self, start_ms: float) -> list[Arrival]:
        with self._lock:
            return [a for a in self._items if a.arrival_ms >= start_ms]


class Replanner:
    """Re-plans an engine's traffic every ``config.period_s`` (in a thread)."""

    def __init__(self, engine, planner: Planner, config: ReplanConfig,  # noqa: ANN001
                 max_utilization: float = DEFAULT_MAX_UTILIZATION) -> None:
        self.engine = engine
        self.planner = planner
        self.config = config
        self.max_utilization = max_utilization
        self.switches: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graft-replan", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.config.period_s):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a failed re-plan keeps the plan in force
                log.exception("re-planning failed; the plan in force stays")

    def step(self) -> str | None:
        """Observe the last window, plan it, and swap if the rules say so; the reason of a
        switch, or None."""
        engine = self.engine
        end = now_ms()
        start = end - self.config.window_s * 1000.0
        window = observe(engine.arrivals.since(start), engine.cost, window_ms=(start, end))
        candidate = make_candidate(self.planner, window, engine.cost,
                                   max_utilization=self.max_utilization)
        current = Candidate(engine.plan, Window((), 0.0, engine.workload))
        reason = switch_reason(current, candidate, hysteresis=self.config.hysteresis,
                               max_utilization=self.max_utilization, cost=engine.cost)
        if reason is None or candidate.plan is None:
            return None
        log.info("re-planning (%s): %s, share %.3f -> %.3f", reason,
                 plural(len(candidate.workload.flows), "flow"), engine.plan.total_share,
                 candidate.plan.total_share)
        engine.swap(candidate.plan, candidate.workload)
        self.switches.append((end, reason))
        return reason
