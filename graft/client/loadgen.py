"""``graft loadgen``: drive a server with requests as clients would, and measure it.

Three ways to send:

* **poisson** (open loop): every flow of a workload sends at its rate, Poisson arrivals,
  to ``<model>.p<partition>`` with ``timeout`` = the flow's budget;
* **trace**: a scenario's clients on their bandwidth traces (``graft.client.traffic``):
  each request leaves at its server-arrival time (device time and upload already elapsed, so
  upload delays follow the trace) with its own budget;
* **concurrency** (closed loop): ``N`` requests in flight at all times, round-robin over the
  workload's flows.

Requests speak the v2 HTTP protocol with binary tensors, built once per flow (the same
random activation every time), so the generator spends little per request. A live progress
line goes to stderr; the result is a table per model entry (throughput, p50/p90/p95/p99,
SLO attainment, rejections), and optionally JSON and a perf_analyzer-style CSV.
``check_server`` refuses, before the run, a server that does not answer at all.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.runtime.protocol import HEADER_LENGTH
from graft.runtime.repository import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

MODES = ("poisson", "trace", "concurrency")


@dataclass(frozen=True)
class Send:
    """One request to send: when (seconds from the start), to which model entry, its
    budget (ms), and which flow or client it stands for."""

    at_s: float
    model: str
    partition: int
    budget_ms: float
    source: str


@dataclass
class Outcome:
    source: str
    entry: str
    sent_s: float
    latency_ms: float
    status: int
    budget_ms: float

    @property
    def on_time(self) -> bool:
        return self.status == 200 and self.latency_ms <= self.budget_ms


def request_body(model: str, partition: int, budget_ms: float, seed: int = 0
                 ) -> tuple[bytes, int]:
    """The body of a v2 infer request carrying one random activation as binary data, and
    its JSON header's length."""
    shape = [1, *get_model(model).in_shape(partition)]
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    blob = x.tobytes()
    head = json.dumps({
        "inputs": [{"name": INPUT_NAME, "shape": shape, "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": OUTPUT_NAME, "parameters": {"binary_data": True}}],
        "parameters": {"timeout": max(1, int(budget_ms * 1000))},
    }).encode()
    return head + blob, len(head)


def poisson_schedule(flows: Sequence[Any], duration_s: float, seed: int = 0) -> list[Send]:
    """Every flow's Poisson arrivals over ``duration_s``, in time order."""
    rng = np.random.default_rng(seed)
    out = []
    for f in flows:
        n = rng.poisson(f.rate * duration_s)
        out += [Send(float(t), f.model, f.partition, f.budget_ms, f.id)
                for t in rng.uniform(0, duration_s, size=n)]
    return sorted(out, key=lambda s: s.at_s)


def trace_schedule(requests: Sequence[Any]) -> list[Send]:
    """A scenario's client requests, each sent at its server arrival (those whose budget is
    already gone are sent anyway and count as misses)."""
    reqs = sorted(requests, key=lambda r: r.arrival_ms)
    t0 = reqs[0].arrival_ms if reqs else 0.0
    return [Send((r.arrival_ms - t0) / 1000.0, r.model, r.partition, max(r.budget_ms, 0.001),
                 r.client) for r in reqs]


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    mode: str = "poisson"
    concurrency: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """One row per model entry, then the total."""
        by: dict[str, list[Outcome]] = defaultdict(list)
        for o in self.outcomes:
            by[o.entry].append(o)
        rows = [self._row(name, by[name]) for name in sorted(by)]
        rows.append(self._row("all", self.outcomes))
        return rows

    def _row(self, name: str, outs: list[Outcome]) -> dict[str, Any]:
        ok = np.array([o.latency_ms for o in outs if o.status == 200])
        pct = (lambda q: float(np.percentile(ok, q))) if ok.size else (lambda q: None)
        return {
            "entry": name,
            "sent": len(outs),
            "answered": int(ok.size),
            "rejected": sum(o.status == 503 for o in outs),
            "failed": sum(o.status not in (200, 503) for o in outs),
            "throughput_rps": ok.size / self.seconds if self.seconds else 0.0,
            "goodput_rps": sum(o.on_time for o in outs) / self.seconds if self.seconds else 0.0,
            "p50_ms": pct(50), "p90_ms": pct(90), "p95_ms": pct(95), "p99_ms": pct(99),
            "slo_attainment": sum(o.on_time for o in outs) / len(outs) if outs else 1.0,
        }

    def table(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        lines = ["| model | sent | answered | rejected | failed | req/s | p50 ms | p90 ms |"
                 " p95 ms | p99 ms | SLO attainment |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows():
            lines.append(f"| {r['entry']} | {r['sent']} | {r['answered']} | {r['rejected']} | "
                         f"{r['failed']} | {r['throughput_rps']:.1f} | {ms(r['p50_ms'])} | "
                         f"{ms(r['p90_ms'])} | {ms(r['p95_ms'])} | {ms(r['p99_ms'])} | "
                         f"{r['slo_attainment']:.3f} |")
        return "\n".join(lines)

    def write_json(self, path: str) -> None:
        with open(path, "w") as fh:
            json.dump({"mode": self.mode, "seconds": self.seconds, "rows": self.rows()}, fh,
                      indent=1)

    def write_csv(self, path: str) -> None:
        """perf_analyzer's CSV columns that a client can measure (latencies in us)."""
        total = self.rows()[-1]
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["Concurrency", "Inferences/Second", "p50 latency", "p90 latency",
                        "p95 latency", "p99 latency", "SLO attainment", "Rejected"])
            w.writerow([self.concurrency, f"{total['throughput_rps']:.2f}",
                        *(int(total[k] * 1000) if total[k] is not None else ""
                          for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")),
                        f"{total['slo_attainment']:.4f}", total["rejected"]])


class _Sender:
    """Posts requests with one aiohttp session; bodies built once per (entry, budget)."""

    def __init__(self, url: str, session: Any) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.bodies: dict[tuple[str, int, float], tuple[bytes, int]] = {}

    async def send(self, s: Send, start: float) -> Outcome:
        key = (s.model, s.partition, s.budget_ms)
        body = self.bodies.get(key)
        if body is None:
            body = self.bodies[key] = request_body(s.model, s.partition, s.budget_ms)
        entry = f"{s.model}.p{s.partition}"
        t0 = time.perf_counter()
        try:
            async with self.session.post(
                    f"{self.url}/v2/models/{entry}/infer", data=body[0],
                    headers={HEADER_LENGTH: str(body[1]),
                             "Content-Type": "application/octet-stream"}) as resp:
                await resp.read()
                status = resp.status
        except Exception as e:  # noqa: BLE001 - any transport failure is a failed request
            log.debug("request to %s failed: %s", entry, e)
            status = 0
        done = time.perf_counter()
        return Outcome(s.source, entry, t0 - start, (done - t0) * 1000.0, status, s.budget_ms)


#: Seconds ``check_server`` waits for the server's first answer.
CHECK_TIMEOUT_S = 10.0


async def _health(url: str, timeout_s: float) -> int:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s, \
            s.get(f"{url.rstrip('/')}/v2/health/live") as resp:
        await resp.read()
        return resp.status


def check_server(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Refuse, before any request is sent, a ``url`` that is not an http(s) address or
    where no server answers (nobody listening, an unknown host, no answer within
    ``timeout_s``): a ``GraftInputError``, not a run of failed requests. Any HTTP answer
    to ``/v2/health/live`` counts as a server."""
    import aiohttp

    if not url.startswith(("http://", "https://")):
        raise GraftInputError(f"the server's address must start with http:// or https://, "
                              f"got {url!r}")
    try:
        status = asyncio.run(_health(url, timeout_s))
    except asyncio.TimeoutError:
        raise GraftInputError(f"no answer from the server at {url} within {timeout_s:g} s"
                              ) from None
    except aiohttp.InvalidURL:
        raise GraftInputError(f"{url!r} is not a valid http address") from None
    except (aiohttp.ClientError, OSError) as e:
        cause = getattr(e, "os_error", None)
        errno = getattr(cause, "errno", None)
        why = (os.strerror(errno) if errno and errno > 0  # not getaddrinfo's negative codes
               else getattr(cause, "strerror", None) or str(e) or type(e).__name__)
        raise GraftInputError(f"cannot reach the server at {url}: {why}") from None
    except ValueError as e:  # a port out of range, a bracket not closed, ...
        raise GraftInputError(f"{url!r} is not a valid http address: {e}") from None
    log.info("server at %s answered %d to /v2/health/live", url, status)


def _progress(report: Report, start: float, total: int | None, out: Any) -> None:
    n = len(report.outcomes)
    elapsed = time.perf_counter() - start
    ok = sum(o.on_time for o in report.outcomes)
    out.write(f"\r{elapsed:6.1f} s  {n}{'/' + str(total) if total else ''} answered or "
              f"refused, {n / max(elapsed, 1e-9):7.1f} req/s, "
              f"attainment {ok / n if n else 1.0:.3f}   ")
    out.flush()


async def run_open_loop(url: str, schedule: Sequence[Send], *, progress: Any = None,
                        max_in_flight: int = 4096) -> Report:
    """Send ``schedule`` at its times (open loop); at most ``max_in_flight`` outstanding."""
    import aiohttp

    report = Report()
    limit = asyncio.Semaphore(max_in_flight)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        sender = _Sender(url, session)
        start = time.perf_counter()
        tasks = []
        last_progress = start

        async def one(s: Send) -> None:
            async with limit:
                report.outcomes.append(await sender.send(s, start))

        for s in schedule:
            delay = start + s.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(s)))
            if progress is not None and time.perf_counter() - last_progress > 1.0:
                last_progress = time.perf_counter()
                _progress(report, start, len(schedule), progress)
        await asyncio.gather(*tasks)
        report.seconds = max(time.perf_counter() - start, schedule[-1].at_s if schedule else 0)
    if progress is not None:
        _progress(report, start, len(schedule), progress)
        progress.write("\n")
    return report


async def run_closed_loop(url: str, flows: Sequence[Any], *, concurrency: int,
                          duration_s: float, progress: Any = None) -> Report:
    """``concurrency`` requests in flight for ``duration_s``, round-robin over ``flows``."""
    import aiohttp

    report = Report(mode="concurrency", concurrency=concurrency)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        sender = _Sender(url, session)
        start = time.perf_counter()
        end = start + duration_s
        counter = iter(range(1 << 62))

        async def worker() -> None:
            while time.perf_counter() < end:
                f = flows[next(counter) % len(flows)]
                report.outcomes.append(await sender.send(
                    Send(0.0, f.model, f.partition, f.budget_ms, f.id), start))

        async def tick() -> None:
            while time.perf_counter() < end:
                await asyncio.sleep(1.0)
                if progress is not None:
                    _progress(report, start, None, progress)

        await asyncio.gather(tick(), *(worker() for _ in range(concurrency)))
        report.seconds = time.perf_counter() - start
    if progress is not None:
        _progress(report, start, None, progress)
        progress.write("\n")
    return report


def progress_stream(enabled: bool) -> Any:
    return sys.stderr if enabled else None
