"""Cost models by name: the names the CLI offers.

* ``analytic:<gpu>``: the analytic roofline model on a GPU preset (t4, v100, a100, h100, h200).
* ``profile:<builtin>``: a profile shipped with the package (``tiny-cpu``).
* ``profile:<path>``: a profile JSON written by ``graft profile``.

A name is built once and cached: later calls return the same object (its grid caches stay).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from graft.cost.analytic import AnalyticCostModel
from graft.cost.base import CostModel
from graft.cost.devices import GPUS
from graft.cost.profiled import ProfileCostModel
from graft.errors import GraftInputError, UnknownNameError

ANALYTIC = "analytic:"
PROFILE = "profile:"

#: Profiles shipped in graft/cost/data, by the name after ``profile:``.
BUILTIN_PROFILES: dict[str, str] = {"tiny-cpu": "tiny_cpu_profile.json"}


def cost_model_names() -> list[str]:
    """Every registered name; ``profile:<path>`` stands for any profile file."""
    return (
        [ANALYTIC + g for g in GPUS]
        + [PROFILE + p for p in BUILTIN_PROFILES]
        + [PROFILE + "<path>"]
    )


def _builtin_profile(key: str) -> ProfileCostModel:
    res = resources.files("graft.cost").joinpath("data", BUILTIN_PROFILES[key])
    with resources.as_file(res) as path:
        return ProfileCostModel.from_file(path, name=PROFILE + key)


@cache
def make_cost_model(name: str) -> CostModel:
    """The cost model called ``name`` (see :func:`cost_model_names`)."""
    if not isinstance(name, str):
        raise UnknownNameError("cost model", repr(name), cost_model_names())
    if name.startswith(ANALYTIC):
        gpu = name[len(ANALYTIC) :]
        if gpu not in GPUS:
            raise UnknownNameError("cost model", name, cost_model_names())
        return AnalyticCostModel(gpu)
    if name.startswith(PROFILE):
        target = name[len(PROFILE) :]
        if target in BUILTIN_PROFILES:
            return _builtin_profile(target)
        if not target:
            raise GraftInputError("cost model 'profile:' needs a path: profile:<path>")
        return ProfileCostModel.from_file(target, name=name)
    raise UnknownNameError("cost model", name, cost_model_names())
