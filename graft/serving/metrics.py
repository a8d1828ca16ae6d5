"""One metrics function for the simulator and the runtime: finished requests -> numbers.

``slo_attainment`` is on-time completions over all requests (rejected and dropped ones
count against it; 1.0 when there are none); ``p50_ms``/``p99_ms`` are server-side latencies
of completed requests (None when none completed). ``outcomes`` gives the per-request
columns the numbers are counted from; ``tally`` counts them (the simulator's report calls it
on the columns of all its plans' requests).

Why a request missed (``MISS_REASONS``, one reason per request that was not on time, the
first that applies): ``client_budget``, it reached the server with a budget below the
fastest its fragment can run (the client's head, upload and download left too little; no
server could have it on time); ``admission``, REJECTED on arrival (no route for its
fragment, or a budget below its route's least latency); ``late``, COMPLETED after its
deadline (it queued behind other batches); ``dropped``, DROPPED (its deadline passed before
its batch formed, or it was unfinished when the run stopped). ``late`` and ``dropped`` are
both queueing. ``tally`` adds them (``misses``, and ``per_group`` for any grouping such as
the simulator's client groups) when it is given which requests had a client budget too
small.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.rules import fastest_ms
from graft.serving.lifecycle import Request, RequestState, on_time_mask


@dataclass(frozen=True)
class Outcomes:
    """Per request, in request order: terminal-state masks, on time, completion ms (NaN
    where not completed)."""

    completed: np.ndarray
    dropped: np.ndarray
    rejected: np.ndarray
    on_time: np.ndarray
    completion_ms: np.ndarray


def outcomes(requests: Sequence[Request]) -> Outcomes:
    """The columns of ``requests``; ValueError if one is not in a terminal state."""
    n = len(requests)
    states = [r.state for r in requests]

    def mask(state: RequestState) -> np.ndarray:
        return np.fromiter([s is state for s in states], bool, n)

    completed, dropped, rejected = (mask(s) for s in (RequestState.COMPLETED,
                                                      RequestState.DROPPED,
                                                      RequestState.REJECTED))
    unfinished = n - int(completed.sum() + dropped.sum() + rejected.sum())
    if unfinished:
        raise ValueError(f"{unfinished} requests are not in a terminal state")
    done = np.fromiter([r.completion_ms if r.completion_ms is not None else np.nan
                        for r in requests], float, n)
    done[~completed] = np.nan
    deadline = np.fromiter([r.deadline_ms for r in requests], float, n)
    return Outcomes(completed, dropped, rejected, on_time_mask(done, deadline), done)


#: Why requests were not on time, in order of precedence (module docstring).
MISS_REASONS = ("client_budget", "admission", "late", "dropped")


def below_fastest(cost: CostModel, requests: Iterable[tuple[str, int, float]],
                  count: int = -1) -> np.ndarray:
    """Per (model, partition, budget ms) of ``requests``, whether the budget is below the
    fastest its fragment ``[p, L)`` can run at any batch and share of ``cost``: the client
    left too little for any server (the ``client_budget`` reason)."""
    return np.fromiter(
        (budget < fastest_ms(cost, model, p, get_model(model).num_blocks)
         for model, p, budget in requests), bool, count)


def miss_masks(o: Outcomes, client_budget: np.ndarray) -> dict[str, np.ndarray]:
    """Per reason of ``MISS_REASONS``, which requests missed for it: every request that is not
    on time has exactly one reason. ``client_budget``: per request, whether its budget was
    below the fastest its fragment can run."""
    missed = ~o.on_time
    client = np.asarray(client_budget, bool) & missed
    server = missed & ~client
    return {"client_budget": client, "admission": server & o.rejected,
            "late": server & o.completed, "dropped": server & o.dropped}


def misses(o: Outcomes, client_budget: np.ndarray) -> dict[str, int]:
    """How many requests missed for each reason of ``MISS_REASONS``."""
    return {k: int(m.sum()) for k, m in miss_masks(o, client_budget).items()}


def _misses_by(keys: Sequence[str] | np.ndarray, o: Outcomes,
               client_budget: np.ndarray) -> dict[str, dict[str, Any]]:
    """Attainment and ``misses`` per key, keys sorted."""
    names, index = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    masks = miss_masks(o, client_budget)
    total = np.bincount(index, minlength=len(names))
    hits = np.bincount(index, weights=o.on_time, minlength=len(names))
    counts = {k: np.bincount(index, weights=m, minlength=len(names)) for k, m in masks.items()}
    return {str(k): {**_attainment(int(total[c]), int(hits[c])),
                     **{r: int(counts[r][c]) for r in MISS_REASONS}}
            for c, k in enumerate(names)}


def _attainment(requests: int, on_time: int) -> dict[str, Any]:
    return {"requests": requests, "on_time": on_time,
            "slo_attainment": on_time / requests if requests else 1.0}


def _by(keys: Sequence[str] | np.ndarray, on_time: np.ndarray) -> dict[str, dict[str, Any]]:
    """Attainment per key, keys sorted."""
    names, index = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    total = np.bincount(index, minlength=len(names))
    hits = np.bincount(index, weights=on_time, minlength=len(names))
    return {str(k): _attainment(int(total[c]), int(hits[c])) for c, k in enumerate(names)}


def summarize(requests: Iterable[Request], cost: CostModel | None = None) -> dict[str, Any]:
    """Counts, attainment and latency percentiles of requests in terminal states; with
    ``cost``, also why requests missed (``misses``: a request whose budget, deadline minus
    arrival, is below the fastest its fragment runs under ``cost`` is a ``client_budget``
    miss)."""
    reqs = list(requests)
    o = outcomes(reqs)
    arrival = np.fromiter([r.arrival_ms for r in reqs], float, len(reqs))
    client = None
    if cost is not None:
        client = below_fastest(cost, ((r.model, r.partition, r.deadline_ms - r.arrival_ms)
                                      for r in reqs), len(reqs))
    return tally(o, o.completion_ms - arrival, [r.model for r in reqs],
                 [r.flow for r in reqs], client_budget=client)


def tally(o: Outcomes, latency_ms: np.ndarray, models: Sequence[str] | np.ndarray,
          flows: Sequence[str] | np.ndarray | None = None, *,
          client_budget: np.ndarray | None = None,
          groups: Sequence[str] | np.ndarray | None = None) -> dict[str, Any]:
    """``summarize``'s numbers from columns: ``latency_ms`` per request (read where
    completed), each request's model and (optionally) flow. The simulator, which measures
    latency end to end and gathers its requests from several plans, calls this directly.
    With ``client_budget`` (per request: its budget was below the fastest its fragment can
    run) it adds ``misses`` (counts per ``MISS_REASONS``), and with ``groups`` too (a group
    name per request) ``per_group``: attainment and misses per group."""
    lat = np.asarray(latency_ms, float)[o.completed]
    out = _attainment(len(o.completed), int(o.on_time.sum()))
    completed = int(o.completed.sum())
    out.update({
        "completed": completed,
        "late": completed - out["on_time"],
        "dropped": int(o.dropped.sum()),
        "rejected": int(o.rejected.sum()),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "per_model": _by(models, o.on_time),
    })
    if flows is not None:
        out["per_flow"] = _by(flows, o.on_time)
    if client_budget is not None:
        out["misses"] = misses(o, client_budget)
        if groups is not None:
            out["per_group"] = _misses_by(groups, o, client_budget)
    return out


def concat(parts: Sequence[Outcomes]) -> Outcomes:
    """The outcomes of several batches of requests, one after the other."""
    def cat(name: str, dtype: type) -> np.ndarray:
        cols = [getattr(p, name) for p in parts]
        return np.concatenate(cols) if cols else np.zeros(0, dtype)
    return Outcomes(cat("completed", bool), cat("dropped", bool), cat("rejected", bool),
                    cat("on_time", bool), cat("completion_ms", float))
