"""The discrete-event simulator: a plan serving a workload's arrivals (``simulate_plan``) or an
explicit list of server arrivals (``simulate_requests``) under the batching policy, request
lifecycle and metrics of ``graft.serving``, with cost-model batch times in place of workers."""

from graft.sim.server import Result, simulate_plan, simulate_requests

__all__ = ["Result", "simulate_plan", "simulate_requests"]
