"""Prometheus metrics of a running server (``GET /metrics``).

Per stage: batch-size and batch-latency histograms, and per executor the queue length; per
model entry: requests answered on time and late; rejections and failures by reason; the
plan in force (its planner, total share and GPUs as labels of an info gauge).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SECONDS_BUCKETS = (0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.02,
                   0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

__all__ = ["CONTENT_TYPE", "ServerMetrics"]


class ServerMetrics:
    """The metrics of one server, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram("graft_batch_size", "requests per batch a stage ran",
                                    ["stage"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("graft_batch_seconds", "execution time of a batch",
                                       ["stage"], buckets=SECONDS_BUCKETS, registry=r)
        self.queue = Gauge("graft_queue_length", "requests queued or running at an executor",
                           ["executor"], registry=r)
        self.answered = Counter("graft_requests_total", "requests answered, by SLO outcome",
                                ["model", "slo"], registry=r)
        self.refused = Counter("graft_rejections_total", "requests refused or failed",
                               ["model", "reason"], registry=r)
        self.latency = Histogram("graft_request_seconds", "server time of answered requests",
                                 ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self.server = Histogram("graft_server_seconds",
                                "time a frontend spent on an infer request: decoding, routing, "
                                "queues, execution, hand-offs, encoding", ["protocol"],
                                buckets=SECONDS_BUCKETS, registry=r)
        self.forwarded = Counter("graft_forwarded_total",
                                 "requests a node of a cluster sent on to another node, by the "
                                 "node and its answer's HTTP status (or unreachable, timeout)",
                                 ["node", "status"], registry=r)
        self.plan = Gauge("graft_plan_info", "the plan in force (value: its total share)",
                          ["planner", "cost_model", "gpus"], registry=r)

    def ran(self, stage: str, batch: int, seconds: float) -> None:
        self.batch_size.labels(stage).observe(batch)
        self.batch_seconds.labels(stage).observe(seconds)

    def answer(self, model: str, seconds: float, on_time: bool) -> None:
        self.answered.labels(model, "met" if on_time else "missed").inc()
        self.latency.labels(model).observe(seconds)

    def refuse(self, model: str, reason: str) -> None:
        self.refused.labels(model, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
