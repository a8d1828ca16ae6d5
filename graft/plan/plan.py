"""The plan: the contract between planner, simulator and runtime.

A frozen value that round-trips through JSON (``to_json`` / ``from_json``) in the format
the README documents. ``graft.plan.verify`` checks it against a workload and a cost model;
``graft.plan.rules`` holds the rules both follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from graft import fields, limits
from graft.cost.base import MPS_MAX_CLIENTS, CostModel
from graft.errors import GraftInputError
from graft.plan import rules
from graft.plan.cluster import Cluster, Placement

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
    def from_json(cls, d: Any, where: str = "stage.") -> Stage:
        """A stage from its JSON object; a field of the wrong type or beyond its bound is a
        GraftInputError naming it (``where`` prefixes the names, e.g. ``stages[0].``)."""
        d = fields.obj(d, where.rstrip("."), STAGE_FIELDS, prefix=where)
        gpus = fields.integers(d, "gpus", where, default=[])
        for g in gpus:
            limits.GPUS.check(g + 1, f"GPU {g} makes a plan of {{}}", field=f"{where}gpus")
        return cls(
            id=fields.string(d, "id", where),
            model=fields.string(d, "model", where),
            start=fields.integer(d, "start", where, minimum=None),
            end=fields.integer(d, "end", where, minimum=None),
            batch=_batch(d, where),
            share=fields.number(d, "share", where),
            replicas=fields.integer(d, "replicas", where, minimum=None),
            exec_ms=fields.number(d, "exec_ms", where, minimum=0, exclusive=True),
            rate=fields.number(d, "rate", where, minimum=0),
            gpus=tuple(gpus),
            duty_cycle_ms=fields.optional_number(d, "duty_cycle_ms", where, minimum=0,
                                                 exclusive=True),
            slice=fields.optional_string(d, "slice", where),
            slice_share=fields.optional_number(d, "slice_share", where, minimum=0,
                                               exclusive=True),
        )


STAGE_FIELDS = ("id", "model", "start", "end", "batch", "share", "replicas", "exec_ms", "rate",
                "gpus", "duty_cycle_ms", "slice", "slice_share")


def _batch(d: dict, where: str) -> int:
    batch = fields.integer(d, "batch", where, minimum=None)
    limits.BATCH.check(batch, "a batch of {}", field=f"{where}batch")
    return batch


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
    def from_json(cls, d: Any, where: str = "route.") -> Route:
        d = fields.obj(d, where.rstrip("."), ("flow", "stages", "latency_ms", "handoff_ms"),
                       prefix=where)
        return cls(flow=fields.string(d, "flow", where),
                   stages=tuple(fields.strings(d, "stages", where)),
                   latency_ms=fields.number(d, "latency_ms", where),
                   handoff_ms=fields.number(d, "handoff_ms", where, default=0.0))


@dataclass(frozen=True)
class Unserved:
    flow: str
    needed_budget_ms: float

    def to_json(self) -> dict:
        return {"flow": self.flow, "needed_budget_ms": self.needed_budget_ms}

    @classmethod
    def from_json(cls, d: Any, where: str = "unserved.") -> Unserved:
        d = fields.obj(d, where.rstrip("."), ("flow", "needed_budget_ms"), prefix=where)
        return cls(flow=fields.string(d, "flow", where),
                   needed_budget_ms=fields.number(d, "needed_budget_ms", where))


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
    #: The cluster a plan is placed on (None: one machine), and the node of each GPU.
    cluster: Cluster | None = None
    gpu_nodes: tuple[str, ...] = ()

    @cached_property
    def placement(self) -> Placement | None:
        """Where the plan's GPUs sit (``graft.plan.rules`` prices hand-offs across nodes),
        or None on one machine; built once per plan (the verifier asks for every route)."""
        if self.cluster is None:
            return None
        index = {n.name: i for i, n in enumerate(self.cluster.nodes)}
        return Placement(self.cluster, tuple(index.get(n, -1) for n in self.gpu_nodes))

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
        placement = self.placement
        return {r.flow: rules.least_route_ms(cost, [by_id[s] for s in r.stages], placement)
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
            **({"cluster": self.cluster.to_json(), "gpu_nodes": list(self.gpu_nodes)}
               if self.cluster is not None else {}),
        }

    @classmethod
    def from_json(cls, d: Any) -> Plan:
        """A plan from its JSON value (the format ``to_json`` writes). A value of the wrong
        type, an unknown field, or a plan beyond ``limits.GPUS`` (its GPU indices, its
        processes: at most ``MPS_MAX_CLIENTS`` per GPU) or ``limits.BATCH`` is a
        GraftInputError naming the field; the rules themselves are ``verify``'s."""
        if not isinstance(d, dict):
            raise GraftInputError("a plan is a JSON object")
        fields.obj(d, "plan", PLAN_FIELDS, prefix="")
        stages = fields.array(d, "stages", "")
        routes = fields.array(d, "routes", "")
        unserved = fields.array(d, "unserved", "", default=[])
        info = d.get("info", {})
        if not isinstance(info, dict):
            raise GraftInputError(f"must be an object, got {fields.type_name(info)}",
                                  field="info")
        for key in ("routes", "unserved"):
            limits.FLOWS.check(len(d.get(key, ())), f"the plan's {key} name {{}}", field=key)
        plan = cls(
            planner=fields.string(d, "planner", ""),
            cost_model=fields.string(d, "cost_model", ""),
            gpu_sharing=fields.string(d, "gpu_sharing", "", default=SPATIAL),
            lower_bound_share=fields.number(d, "lower_bound_share", "", default=0.0),
            stages=tuple(Stage.from_json(s, f"stages[{i}].") for i, s in enumerate(stages)),
            routes=tuple(Route.from_json(r, f"routes[{i}].") for i, r in enumerate(routes)),
            unserved=tuple(Unserved.from_json(u, f"unserved[{i}].")
                           for i, u in enumerate(unserved)),
            info=dict(info),
            declared_totals=(fields.number(d, "total_share", ""),
                             fields.integer(d, "gpus", "", minimum=None)),
            cluster=Cluster.from_json(d["cluster"]) if "cluster" in d else None,
            gpu_nodes=tuple(fields.strings(d, "gpu_nodes", "", default=[])),
        )
        if plan.gpu_nodes and plan.cluster is None:
            raise GraftInputError("names nodes but the plan has no cluster", field="gpu_nodes")
        processes = sum(max(s.replicas, 0) for s in plan.stages)
        limits.GPUS.check(math.ceil(processes / MPS_MAX_CLIENTS),
                          f"the plan's {processes} processes need at least {{}}",
                          field="replicas")
        return plan


PLAN_FIELDS = ("planner", "cost_model", "gpu_sharing", "total_share", "gpus",
               "lower_bound_share", "stages", "routes", "unserved", "info", "cluster",
               "gpu_nodes")
