"""One metrics function for the simulator and the runtime: finished requests -> numbers.

``slo_attainment`` is on-time completions over all requests (rejected and dropped ones
count against it; 1.0 when there are none); ``p50_ms``/``p99_ms`` are server-side latencies
of completed requests (None when none completed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from graft.sim.lifecycle import Request, RequestState


def _attainment(reqs: list[Request]) -> dict[str, Any]:
    on_time = sum(r.on_time for r in reqs)
    return {"requests": len(reqs), "on_time": on_time,
            "slo_attainment": on_time / len(reqs) if reqs else 1.0}


def _by(reqs: list[Request], key: Callable[[Request], str]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Request]] = defaultdict(list)
    for r in reqs:
        groups[key(r)].append(r)
    return {k: _attainment(v) for k, v in sorted(groups.items())}


def summarize(requests: Iterable[Request]) -> dict[str, Any]:
    """Counts, attainment and latency percentiles of requests in terminal states."""
    reqs = list(requests)
    count = {s: 0 for s in RequestState}
    for r in reqs:
        count[r.state] += 1
    lat = np.array([r.latency_ms for r in reqs if r.state is RequestState.COMPLETED])
    out = _attainment(reqs)
    completed = count[RequestState.COMPLETED]
    out.update({
        "completed": completed,
        "late": completed - out["on_time"],
        "dropped": count[RequestState.DROPPED],
        "rejected": count[RequestState.REJECTED],
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "per_flow": _by(reqs, lambda r: r.flow),
        "per_model": _by(reqs, lambda r: r.model),
    })
    unfinished = len(reqs) - completed - out["dropped"] - out["rejected"]
    if unfinished:
        raise ValueError(f"{unfinished} requests are not in a terminal state")
    return out
