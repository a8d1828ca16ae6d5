"""Planners by name: the names are the CLI's ``--planner`` choices."""

from __future__ import annotations

from collections.abc import Callable

from graft.errors import UnknownNameError
from graft.planner.base import Planner
from graft.planner.graft_planner import GraftPlanner
from graft.planner.gslice import GslicePlanner, GsliceSinglePlanner
from graft.planner.nexus import NexusPlanner
from graft.planner.optimal import OptimalPlanner

_PLANNERS: dict[str, Callable[[], Planner]] = {
    "graft": GraftPlanner,
    "gslice": GslicePlanner,
    "gslice-single": GsliceSinglePlanner,
    "nexus": NexusPlanner,
    "optimal": OptimalPlanner,
}


def register(name: str, factory: Callable[[], Planner]) -> None:
    _PLANNERS[name] = factory


def planner_names() -> list[str]:
    return list(_PLANNERS)


def make_planner(name: str) -> Planner:
    try:
        return _PLANNERS[name]()
    except KeyError:
        raise UnknownNameError("planner", name, planner_names()) from None
