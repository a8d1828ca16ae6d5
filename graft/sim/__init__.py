"""The discrete-event simulator: a plan serving a workload's arrivals (``simulate_plan``) or an
explicit list of server arrivals (``simulate_requests``) under the shared batching policy and
request lifecycle, and the one metrics function."""

from graft.sim.lifecycle import Request, RequestState
from graft.sim.metrics import summarize
from graft.sim.server import Result, ServerArrival, simulate_plan, simulate_requests

__all__ = ["Request", "RequestState", "Result", "ServerArrival", "simulate_plan",
           "simulate_requests", "summarize"]
