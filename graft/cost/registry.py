"""Cost models by name: the names the CLI offers.

* ``analytic:<gpu>``: the analytic roofline model on a GPU preset (t4, v100, a100, h100, h200);
  ``analytic:<gpu>,batch_overhead_ms=<ms>,handoff_latency_ms=<ms>`` sets the two fixed costs
  the runtime measures (either, both, or neither).
* ``profile:<builtin>``: a profile shipped with the package (``tiny-cpu``).
* ``profile:<path>``: a profile JSON written by ``graft profile``.
* ``profile:<builtin or path>,scale=<x>``: the same with every time multiplied by ``x`` (set
  from the runtime's measured / predicted batch latency).

A name is built once and cached: later calls return the same object (its grid caches stay).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from graft.cost.analytic import TUNABLE, AnalyticCostModel
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


def _builtin_profile(key: str, name: str, scale: float) -> ProfileCostModel:
    res = resources.files("graft.cost").joinpath("data", BUILTIN_PROFILES[key])
    with resources.as_file(res) as path:
        return ProfileCostModel.from_file(path, name=name, scale=scale)


def _profile_scale(name: str) -> tuple[str, float]:
    """``profile:<target>[,scale=<x>]`` -> (target, x)."""
    target = name[len(PROFILE) :]
    head, sep, value = target.rpartition(",scale=")
    if not sep:
        return target, 1.0
    try:
        return head, float(value)
    except ValueError:
        raise GraftInputError(f"cost model {name!r}: scale must be a number, got "
                              f"{value!r}") from None


def _analytic_settings(name: str, settings: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in TUNABLE or key in out:
            raise GraftInputError(
                f"cost model {name!r}: {item!r} is not one of "
                f"{', '.join(k + '=<ms>' for k in TUNABLE)} (each at most once)")
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if not (0.0 <= ms < 1e3):  # also rejects nan and inf
            raise GraftInputError(f"cost model {name!r}: {key} must be a number of "
                                  f"milliseconds in [0, 1000), got {value!r}")
        out[key] = ms
    return out


@cache
def make_cost_model(name: str) -> CostModel:
    """The cost model called ``name`` (see :func:`cost_model_names`)."""
    if not isinstance(name, str):
        raise UnknownNameError("cost model", repr(name), cost_model_names())
    if name.startswith(ANALYTIC):
        gpu, *settings = name[len(ANALYTIC) :].split(",")
        if gpu not in GPUS:
            raise UnknownNameError("cost model", name, cost_model_names())
        return AnalyticCostModel(gpu, **_analytic_settings(name, settings))
    if name.startswith(PROFILE):
        target, scale = _profile_scale(name)
        if target in BUILTIN_PROFILES:
            return _builtin_profile(target, name, scale)
        if not target:
            raise GraftInputError("cost model 'profile:' needs a path: profile:<path>")
        return ProfileCostModel.from_file(target, name=name, scale=scale)
    raise UnknownNameError("cost model", name, cost_model_names())
