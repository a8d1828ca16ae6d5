"""The plan: the contract between planner, simulator and runtime.

A frozen value that round-trips through JSON (``to_json`` / ``from_json``) in the format
the README documents. ``graft.plan.verify`` checks it against a workload and a cost model;
``graft.plan.rules`` holds the rules both follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.plan import rules

SPATIAL = "spatial"
TEMPORAL = "temporal"


@dataclass(frozen=True)
class Stage:
    """A server instance running blocks [start, end) of ``model``.

    ``share`` is the GPU fraction of one replica (spatial plans) or the fraction of its GPU's
    duty cycle it occupies (temporal plans); ``gpus`` names the GPU of each replica.
    ``duty_cycle_ms`` is set in temporal plans, and in spatial plans for a stage that
    time-shares a slice with others: ``slice`` names the slice, ``slice_share`` is the
    slice's GPU share (the share ``exec_ms`` is measured at), and ``share`` is
    ``slice_share * exec_ms / duty_cycle_ms``, the stage's part of the slice.
    """

    id: str
    model: str
    start: int
    end: int
    batch: int
    share: float
    replicas: int
    exec_ms: float
    rate: float
    gpus: tuple[int, ...] = ()
    duty_cycle_ms: float | None = None
    slice: str | None = None
    slice_share: float | None = None

    @property
    def run_share(self) -> float:
        """The share ``exec_ms`` is measured at in a spatial plan."""
        return self.slice_share if self.slice_share is not None else self.share

    @property
    def time_ms(self) -> float:
        """Worst-case time a request spends in the stage (``rules.stage_time_ms``)."""
        return rules.stage_time_ms(self.exec_ms, self.duty_cycle_ms)

    @property
    def period_ms(self) -> float:
        """How often one replica runs a batch: ``exec_ms``, or its duty cycle."""
        return self.duty_cycle_ms if self.duty_cycle_ms is not None else self.exec_ms

    def to_json(self) -> dict:
        d: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "start": self.start,
            "end": self.end,
            "batch": self.batch,
            "share": self.share,
            "replicas": self.replicas,
            "exec_ms": self.exec_ms,
            "rate": self.rate,
            "gpus": list(self.gpus),
        }
        if self.duty_cycle_ms is not None:
            d["duty_cycle_ms"] = self.duty_cycle_ms
        if self.slice is not None:
            d["slice"] = self.slice
            d["slice_share"] = self.slice_share
        return d

    @classmethod
    def from_json(cls, d: dict) -> Stage:
        return cls(
            id=str(d["id"]),
            model=str(d["model"]),
            start=int(d["start"]),
            end=int(d["end"]),
            batch=int(d["batch"]),
            share=float(d["share"]),
            replicas=int(d["replicas"]),
            exec_ms=float(d["exec_ms"]),
            rate=float(d["rate"]),
            gpus=tuple(int(g) for g in d.get("gpus", ())),
            duty_cycle_ms=(None if d.get("duty_cycle_ms") is None
                           else float(d["duty_cycle_ms"])),
            slice=None if d.get("slice") is None else str(d["slice"]),
            slice_share=None if d.get("slice_share") is None else float(d["slice_share"]),
        )


@dataclass(frozen=True)
class Route:
    """The stages one flow passes, in order. ``latency_ms`` is the worst-case time a request
    spends on it (``rules.route_time_ms``); ``handoff_ms`` is the part of that spent moving
    activations between its stages, from the plan's placement."""

    flow: str
    stages: tuple[str, ...]
    latency_ms: float
    handoff_ms: float = 0.0

    def to_json(self) -> dict:
        return {"flow": self.flow, "stages": list(self.stages), "latency_ms": self.latency_ms,
                "handoff_ms": self.handoff_ms}

    @classmethod
    def from_json(cls, d: dict) -> Route:
        return cls(flow=str(d["flow"]), stages=tuple(str(s) for s in d["stages"]),
                   latency_ms=float(d["latency_ms"]),
                   handoff_ms=float(d.get("handoff_ms", 0.0)))


@dataclass(frozen=True)
class Unserved:
    flow: str
    needed_budget_ms: float

    def to_json(self) -> dict:
        return {"flow": self.flow, "needed_budget_ms": self.needed_budget_ms}

    @classmethod
    def from_json(cls, d: dict) -> Unserved:
        return cls(flow=str(d["flow"]), needed_budget_ms=float(d["needed_budget_ms"]))


@dataclass(frozen=True)
class Process:
    """One process (an executor) serving a plan, on ``gpu``: a stage replica, the replica of
    a time-shared slice (its members take turns), or, in a temporal plan, the sessions of one
    GPU. ``stages`` are the member stage ids in turn order (a temporal GPU holding two
    replicas of a stage names it twice)."""

    gpu: int | None
    stages: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    planner: str
    cost_model: str
    stages: tuple[Stage, ...]
    routes: tuple[Route, ...]
    unserved: tuple[Unserved, ...] = ()
    gpu_sharing: str = SPATIAL
    lower_bound_share: float = 0.0
    #: Planner-specific facts (solver gap, planning time, ...): kept, never checked.
    info: dict = field(default_factory=dict, compare=False)
    #: ``total_share`` and ``gpus`` as a plan file states them (None when built in memory).
    declared_totals: tuple[float, int] | None = field(default=None, compare=False)

    @property
    def total_share(self) -> float:
        return sum(s.share * s.replicas for s in self.stages)

    @property
    def gpus(self) -> int:
        used = {g for s in self.stages for g in s.gpus}
        return (max(used) + 1) if used else 0

    def stage_by_id(self) -> dict[str, Stage]:
        return {s.id: s for s in self.stages}

    def processes(self) -> list[Process]:
        """The processes that serve this plan (``Process``), in a fixed order: the
        verifier counts them per GPU, the simulator and the runtime run one executor each."""
        members: dict[tuple, list[str]] = {}
        gpus: dict[tuple, int | None] = {}
        for st in self.stages:
            for r in range(st.replicas):
                gpu = st.gpus[r] if r < len(st.gpus) else None
                if self.gpu_sharing == TEMPORAL and gpu is not None:
                    key: tuple = ("gpu", gpu)
                elif st.slice is not None:
                    key = ("slice", st.slice, r)
                else:
                    key = ("stage", st.id, r)
                members.setdefault(key, []).append(st.id)
                gpus.setdefault(key, gpu)
        return [Process(gpus[key], tuple(m)) for key, m in members.items()]

    def least_latency_ms(self, cost: CostModel) -> dict[str, float]:
        """Per routed flow, the least time a request can spend in the server
        (``rules.least_route_ms``: every stage idle when the request reaches it). A request
        with less budget than that cannot be on time under this plan."""
        by_id = self.stage_by_id()
        return {r.flow: rules.least_route_ms(cost, [by_id[s] for s in r.stages])
                for r in self.routes}

    def with_info(self, **info: Any) -> Plan:
        return replace(self, info={**self.info, **info})

    def to_json(self) -> dict:
        return {
            "planner": self.planner,
            "cost_model": self.cost_model,
            "gpu_sharing": self.gpu_sharing,
            "total_share": round(self.total_share, 6),
            "gpus": self.gpus,
            "lower_bound_share": round(self.lower_bound_share, 6),
            "stages": [s.to_json() for s in self.stages],
            "routes": [r.to_json() for r in self.routes],
            "unserved": [u.to_json() for u in self.unserved],
            "info": self.info,
        }

    @classmethod
    def from_json(cls, d: Any) -> Plan:
        if not isinstance(d, dict):
            raise GraftInputError("a plan is a JSON object")
        try:
            return cls(
                planner=str(d["planner"]),
                cost_model=str(d["cost_model"]),
                gpu_sharing=str(d.get("gpu_sharing", SPATIAL)),
                lower_bound_share=float(d.get("lower_bound_share", 0.0)),
                stages=tuple(Stage.from_json(s) for s in d["stages"]),
                routes=tuple(Route.from_json(r) for r in d["routes"]),
                unserved=tuple(Unserved.from_json(u) for u in d.get("unserved", ())),
                info=dict(d.get("info", {})),
                declared_totals=(float(d["total_share"]), int(d["gpus"])),
            )
        except KeyError as e:
            raise GraftInputError(f"plan is missing {e.args[0]!r}", field=str(e.args[0])) from None
        except (TypeError, ValueError) as e:
            raise GraftInputError(f"plan has a malformed value: {e}") from None
