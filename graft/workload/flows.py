"""Flows and workloads, and the validation of workload files.

A flow is one client stream: ``(model, partition, rate, budget_ms)``; the server runs blocks
``[partition, L)`` of ``model`` for ``rate`` requests per second, each within ``budget_ms``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from graft import limits
from graft.errors import GraftInputError, UnknownNameError
from graft.fields import obj, show
from graft.jsonio import load_json
from graft.models.catalog import get_model

__all__ = ["FLOW_FIELDS", "Flow", "Workload", "load_workload", "parse_flow", "parse_workload"]

FLOW_FIELDS = ("id", "model", "partition", "rate", "budget_ms")


@dataclass(frozen=True)
class Flow:
    id: str
    model: str
    partition: int
    rate: float
    budget_ms: float

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "model": self.model,
            "partition": self.partition,
            "rate": self.rate,
            "budget_ms": self.budget_ms,
        }


@dataclass(frozen=True)
class Workload:
    flows: tuple[Flow, ...]

    def to_json(self) -> dict:
        return {"flows": [f.to_json() for f in self.flows]}

    def by_id(self) -> dict[str, Flow]:
        return {f.id: f for f in self.flows}

    def models(self) -> list[str]:
        return sorted({f.model for f in self.flows})


def _number(raw: dict, key: str, flow_id: str | None) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GraftInputError(f"must be a number, got {show(value)}", field=key, flow=flow_id)
    return float(value)


def parse_flow(raw: Any, index: int) -> Flow:
    """One flow from its JSON object, or a GraftInputError naming the field and the flow."""
    if not isinstance(raw, dict):
        raise GraftInputError(f"flows[{index}] must be an object, got {type(raw).__name__}")
    flow_id = raw.get("id")
    if not isinstance(flow_id, str) or not flow_id:
        raise GraftInputError(
            f"flows[{index}] needs a non-empty string id, got {show(flow_id)}", field="id"
        )
    obj(raw, f"flows[{index}]", FLOW_FIELDS, prefix="", flow=flow_id)
    missing = [k for k in FLOW_FIELDS if k not in raw]
    if missing:
        raise GraftInputError(f"missing {', '.join(missing)}", field=missing[0], flow=flow_id)
    model_name = raw["model"]
    if not isinstance(model_name, str):
        raise GraftInputError(f"must be a string, got {show(model_name)}", field="model",
                              flow=flow_id)
    try:
        model = get_model(model_name)
    except UnknownNameError as e:
        raise GraftInputError(str(e), field="model", flow=flow_id) from None
    p = raw["partition"]
    if isinstance(p, bool) or not isinstance(p, int):
        raise GraftInputError(f"must be an integer, got {show(p)}", field="partition",
                              flow=flow_id)
    if not 0 <= p < model.num_blocks:
        raise GraftInputError(
            f"{p} is out of range for {model.name} (0..{model.num_blocks - 1})",
            field="partition",
            flow=flow_id,
        )
    rate = _number(raw, "rate", flow_id)
    if not math.isfinite(rate) or rate <= 0:
        raise GraftInputError(f"must be a positive finite number, got {rate}", field="rate",
                              flow=flow_id)
    budget = _number(raw, "budget_ms", flow_id)
    if not math.isfinite(budget) or budget <= 0:
        raise GraftInputError(f"must be a positive finite number, got {budget}",
                              field="budget_ms", flow=flow_id)
    return Flow(id=flow_id, model=model.name, partition=p, rate=rate, budget_ms=budget)


def parse_workload(data: Any) -> Workload:
    """A workload from its JSON value (``{"flows": [...]}``, at most ``limits.FLOWS``
    flows), or a GraftInputError naming the flow and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("flows"), list):
        raise GraftInputError('a workload is an object {"flows": [...]}', field="flows")
    obj(data, "workload", ("flows",), prefix="")
    limits.FLOWS.check(len(data["flows"]), "the workload holds {}", field="flows")
    flows = [parse_flow(raw, i) for i, raw in enumerate(data["flows"])]
    if not flows:
        raise GraftInputError("the workload has no flows", field="flows")
    seen: set[str] = set()
    for f in flows:
        if f.id in seen:
            raise GraftInputError("duplicate flow id", field="id", flow=f.id)
        seen.add(f.id)
    return Workload(tuple(flows))


def load_workload(path: str) -> Workload:
    return parse_workload(load_json(path, "workload"))
