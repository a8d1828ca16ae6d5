"""The client SDK: run the first blocks of a model here, the rest on a graft server.

``SplitClient(url, model, slo_ms=...)`` picks a partition point ``p`` for every request with
the simulator's policy (``neurosurgeon``: the least predicted end-to-end latency; ``energy``;
or ``fixed``), from its bandwidth estimate and its device's cost model, among the points the
server's plan serves (its repository index, read once and again with ``refresh``). It runs
blocks ``[0, p)`` locally with the same weights as the server (seeded, or a state_dict
file), uploads the activation through the unmodified ``tritonclient`` (HTTP) with the server
budget the choice leaves (``timeout``), and returns the final output. The bandwidth
estimate (an EWMA, as the simulated clients keep) learns from the samples the app gives it
(``observe_bandwidth``, e.g. its link's recent throughput), or a request may name its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from graft.client.devices import get_device
from graft.client.estimator import EwmaEstimator
from graft.client.partition import evaluate_points, get_policy
from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError
from graft.plan.rules import needed_budget_ms
from graft.runtime.repository import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SplitResult:
    """One request's answer, and how it was split."""

    output: np.ndarray
    partition: int
    server_budget_ms: float
    head_ms: float
    round_trip_ms: float


class SplitClient:
    """Split inference against a graft server (see the module docstring)."""

    def __init__(self, url: str, model: str, *, slo_ms: float, device: str = "phone-cpu",
                 policy: str = "neurosurgeon", partition: int | None = None,
                 rtt_ms: float = 20.0, bandwidth_mbps: float = 10.0,
                 server_cost_model: str = "analytic:v100", seed: int = 0,
                 state_dict_path: str | None = None) -> None:
        import tritonclient.http as th

        from graft.models.chains import build_chain

        self.model = model
        self.slo_ms = float(slo_ms)
        self.device = get_device(device)
        self.policy = policy
        get_policy(policy)
        self.partition = partition
        self.rtt_ms = rtt_ms
        self.estimator = EwmaEstimator(prior_mbps=bandwidth_mbps)
        self._cost = make_cost_model(server_cost_model)
        self._http = th
        self._client = th.InferenceServerClient(url.removeprefix("http://"))
        self.chain = build_chain(model, seed=seed, state_dict_path=state_dict_path)
        self.served: list[int] = []
        self.refresh()

    def refresh(self) -> list[int]:
        """Read which partition points of the model the server's plan serves."""
        index = self._client.get_model_repository_index()
        prefix = f"{self.model}.p"
        self.served = sorted(int(m["name"][len(prefix):]) for m in index
                             if m["name"].startswith(prefix))
        if not self.served:
            raise GraftInputError(f"the server serves no {self.model} fragment")
        return self.served

    def observe_bandwidth(self, mbps: float) -> None:
        """Feed the bandwidth estimate one throughput sample (Mbit/s)."""
        self.estimator.update(mbps)

    def choose(self, bandwidth_mbps: float | None = None) -> Any:
        """The ``Choice`` for the next request, among the points the server serves."""
        bw = bandwidth_mbps if bandwidth_mbps is not None else self.estimator.estimate_mbps()
        choices = evaluate_points(self.model, self.device, bw, self.slo_ms, self.rtt_ms,
                                  lambda m, p: needed_budget_ms(self._cost, m, p))
        if self.policy == "fixed":
            if self.partition not in self.served:
                raise GraftInputError(f"the server does not serve {self.model} from block "
                                      f"{self.partition} (it serves {self.served})")
            return choices[self.partition]
        served = [choices[p] for p in self.served]
        feasible = [c for c in served if c.feasible] or served
        if self.policy == "energy":
            return min(feasible, key=lambda c: (c.energy_mj, c.partition))
        return min(feasible, key=lambda c: (c.predicted_latency_ms, c.partition))

    def infer(self, x: np.ndarray, bandwidth_mbps: float | None = None) -> SplitResult:
        """Run one input (``x``: samples x the model's input shape) split."""
        import torch

        choice = self.choose(bandwidth_mbps)
        p = choice.partition
        t0 = time.perf_counter()
        with torch.inference_mode():
            act = self.chain.run(torch.from_numpy(np.asarray(x, dtype=np.float32)), 0, p).numpy()
        head_ms = (time.perf_counter() - t0) * 1000.0
        inp = self._http.InferInput(INPUT_NAME, list(act.shape), "FP32")
        inp.set_data_from_numpy(act)
        budget_us = max(1, int(choice.server_budget_ms * 1000))
        t1 = time.perf_counter()
        out = self._client.infer(f"{self.model}.p{p}", [inp], timeout=budget_us)
        trip_ms = (time.perf_counter() - t1) * 1000.0
        return SplitResult(out.as_numpy(OUTPUT_NAME), p, choice.server_budget_ms, head_ms,
                           trip_ms)
