"""The discrete-event simulator: a plan serving a workload under the shared batching
policy and request lifecycle (``simulate_plan``), and the one metrics function."""

from graft.sim.lifecycle import Request, RequestState
from graft.sim.metrics import summarize
from graft.sim.server import Result, simulate_plan

__all__ = ["Request", "RequestState", "Result", "simulate_plan", "summarize"]
