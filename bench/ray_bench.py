"""What a user would pick instead of Graft: the same split-inference workload on Ray Serve.

Every fragment ``(model, p)`` of the flows is one Ray Serve deployment holding blocks
``[p, L)`` of the model (seeded weights, as ``graft serve`` builds them), one replica on the
CPU with one torch thread, whose ``@serve.batch`` method (at most 8 requests, waiting at most
2 ms for a batch to fill) stacks the activations and runs the blocks under
``torch.inference_mode()``. One ingress deployment speaks the Open Inference Protocol as
Graft does (``graft.runtime.protocol``): it decodes ``POST /v2/models/<model>.p<p>/infer``,
sends the activation to the fragment's deployment through its handle and encodes the output
(binary when the client asks). That is one hop more than Graft's frontend (Ray's HTTP proxy,
then the ingress replica, then the fragment replica), as a Ray Serve user would build it.
Ray Serve has no deadlines: every request is run and answered, however late.

Graft's own load generator (``graft.client.loadgen``) drives it unchanged: Poisson arrivals
per flow, each request's budget as its ``timeout``; for every load multiplier the flows'
rates are scaled and the run reports offered load, goodput (answers within their budget per
second), attainment, p50/p99 of the client's round trip, and the mean batch the
``@serve.batch`` methods formed (counted inside the deployments).

    pip install -e .[ray]
    python bench/ray_bench.py --output bench/results/ray_serve.md
    python bench/ray_bench.py --loads 1,4 --duration 8        # a short check

From another script: ``ray_serve_goodput(flows, loads, duration_s)`` for the rows, or
``with ray_serve(fragments) as (url, handles):`` for the server alone. Ray is imported only
there, and Ray (and Serve) are shut down when they return or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graft.client import loadgen
from graft.workload.flows import Flow

log = logging.getLogger("ray_bench")

#: The Serve application's name.
APP = "graft-ray"

#: ``@serve.batch`` settings of every fragment deployment.
MAX_BATCH_SIZE = 8
BATCH_WAIT_S = 0.002
#: Requests one fragment replica takes at once (Ray Serve's default, 5, would cap batches
#: below ``MAX_BATCH_SIZE``; the docs ask for at least the batch size).
FRAGMENT_MAX_ONGOING = 4 * MAX_BATCH_SIZE
#: Requests the ingress replica takes at once (it only decodes, awaits and encodes).
INGRESS_MAX_ONGOING = 1024
#: Requests sent to every entry before measuring (replicas warm, batch paths exercised).
WARMUP_PER_ENTRY = 6
#: Ray's shared-memory object store (activations of 224x224 inputs are 600 KB).
OBJECT_STORE_BYTES = 512 * 2**20

DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_PARTITIONS = (0, 3, 5, 8, 12)
DEFAULT_RATE = 3.0
DEFAULT_BUDGET_MS = 150.0
DEFAULT_LOADS = (1.0, 2.0, 4.0)
DEFAULT_DURATION_S = 10.0


def default_flows(model: str = DEFAULT_MODEL,
                  partitions: Sequence[int] = DEFAULT_PARTITIONS,
                  rate: float = DEFAULT_RATE, budget_ms: float = DEFAULT_BUDGET_MS
                  ) -> list[Flow]:
    """One flow per partition point, all at ``rate`` req/s with ``budget_ms``."""
    return [Flow(f"p{p}", model, p, rate, budget_ms) for p in partitions]


def _import_serve() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise RuntimeError("Ray Serve is not installed: pip install -e .[ray] "
                           f"(ray[serve]>=2.60) to run this benchmark ({e})") from e
    return ray, serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_app(serve: Any, fragments: Sequence[tuple[str, int]], cpus_each: float,
               seed: int) -> Any:
    """The ingress bound to one deployment per fragment. The classes are defined here so
    that the module imports without Ray, and they use nothing of this module (Ray pickles
    them by value; its workers need only ``graft``, torch and numpy)."""

    @serve.deployment(num_replicas=1, max_ongoing_requests=FRAGMENT_MAX_ONGOING,
                      ray_actor_options={"num_cpus": cpus_each})
    class Fragment:
        """Blocks ``[partition, L)`` of ``model``, batched by ``@serve.batch``."""

        def __init__(self, model: str, partition: int, seed: int) -> None:
            import torch

            from graft.models.chains import build_chain

            torch.set_num_threads(1)
            self.chain = build_chain(model, seed=seed)
            self.start, self.end = partition, self.chain.num_blocks
            self.batches = 0
            self.requests = 0

        @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
        async def run(self, xs: list[Any]) -> list[Any]:
            import numpy as np
            import torch

            counts = np.cumsum([len(x) for x in xs])[:-1]
            with torch.inference_mode():
                y = self.chain.run(torch.from_numpy(np.concatenate(xs)), self.start, self.end)
            self.batches += 1
            self.requests += len(xs)
            return np.split(y.numpy(), counts)

        def stats(self) -> tuple[int, int]:
            """(batches run, requests in them) so far."""
            return self.batches, self.requests

    @serve.deployment(num_replicas=1, max_ongoing_requests=INGRESS_MAX_ONGOING,
                      ray_actor_options={"num_cpus": cpus_each})
    class Ingress:
        """The v2 HTTP frontend: routes ``/v2/models/<model>.p<k>/infer`` by path."""

        def __init__(self, handles: dict[str, Any]) -> None:
            self.handles = handles

        async def __call__(self, request: Any) -> Any:
            import re

            from starlette.responses import Response

            from graft.runtime.protocol import HEADER_LENGTH, ProtocolError, error_body
            from graft.runtime.repository import infer_response, read_infer

            def error(status: int, message: str) -> Response:
                return Response(error_body(message), status_code=status,
                                media_type="application/json")

            path = request.url.path
            if path in ("/v2/health/live", "/v2/health/ready"):
                return Response(status_code=200)
            m = re.fullmatch(r"/v2/models/(?P<name>[^/]+)(/versions/[^/]+)?/infer", path)
            if m is None or request.method != "POST":
                return error(404, f"no endpoint {request.method} {path}")
            name = m["name"]
            handle = self.handles.get(name)
            if handle is None:
                return error(404, f"unknown model {name!r}: this server has "
                                  f"{', '.join(sorted(self.handles))}")
            model, partition = name.rsplit(".p", 1)
            try:  # the same decoding and checks as graft's HTTP frontend
                req, x, binary = read_infer(await request.body(),
                                            request.headers.get(HEADER_LENGTH), model,
                                            int(partition))
            except ProtocolError as e:
                return error(e.status, str(e))
            try:
                y = await handle.run.remote(x)
            except Exception as e:  # noqa: BLE001 - a replica's failure answers 500
                return error(500, f"failed: {e}")
            payload, length = infer_response(model, int(partition), req.id, y, binary)
            if length is None:
                return Response(payload, media_type="application/json")
            return Response(payload, media_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(length)})

    handles = {f"{m}.p{p}": Fragment.options(name=f"{m}.p{p}").bind(m, p, seed)
               for m, p in fragments}
    return Ingress.options(name="ingress").bind(handles)


def _batch_stats(handles: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {name: tuple(h.stats.remote().result()) for name, h in handles.items()}


def _scaled(flows: Sequence[Any], load: float) -> list[Flow]:
    return [Flow(f.id, f.model, f.partition, f.rate * load, f.budget_ms) for f in flows]


def _warm_up(url: str, fragments: Sequence[tuple[str, int]], budget_ms: float) -> None:
    schedule = [loadgen.Send(0.05 * i, m, p, budget_ms, "warm-up")
                for i in range(WARMUP_PER_ENTRY) for m, p in fragments]
    report = asyncio.run(loadgen.run_open_loop(url, schedule))
    bad = [o for o in report.outcomes if o.status != 200]
    if bad:
        raise RuntimeError(f"Ray Serve failed {len(bad)} of {len(schedule)} warm-up requests "
                           f"(statuses {sorted({o.status for o in bad})}, first to "
                           f"{bad[0].entry})")


@contextmanager
def ray_serve(fragments: Sequence[tuple[str, int]], *, weights_seed: int = 0,
              num_cpus: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """A local Ray with ``num_cpus`` (default: this machine's cores) serving ``fragments``
    ((model, partition) pairs) as above: yields the server's URL and a handle per entry
    (``<model>.p<k>``); Serve and Ray are shut down on leaving, also on error."""
    ray, serve = _import_serve()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    fragments = sorted(set(fragments))
    cpus = num_cpus or os.cpu_count() or 1
    # Logical CPUs only decide placement: every replica fits, whatever the fragments.
    cpus_each = round(min(1.0, 0.9 * cpus / (len(fragments) + 1)), 3)
    port = _free_port()
    t0 = time.perf_counter()
    log.info("starting Ray (%d CPUs) and Serve on port %d", cpus, port)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, object_store_memory=OBJECT_STORE_BYTES)
    try:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": "127.0.0.1", "port": port},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
        t_ray = time.perf_counter()
        log.info("Ray up in %.1f s; deploying %d fragments", t_ray - t0, len(fragments))
        serve.run(_build_app(serve, fragments, cpus_each, weights_seed), name=APP,
                  route_prefix="/")
        log.info("deployed in %.1f s", time.perf_counter() - t_ray)
        yield (f"http://127.0.0.1:{port}",
               {f"{m}.p{p}": serve.get_deployment_handle(f"{m}.p{p}", APP)
                for m, p in fragments})
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            log.info("Ray shut down (%.0f s after start)", time.perf_counter() - t0)


def ray_serve_goodput(flows: Sequence[Flow], loads: Sequence[float], duration_s: float,
                      seed: int = 1, *, weights_seed: int = 0, num_cpus: int | None = None,
                      progress: bool = False) -> list[dict[str, Any]]:
    """Serve ``flows``' fragments on Ray Serve (``ray_serve``) and drive them with Graft's
    load generator, once per multiplier in ``loads`` (every flow's rate times it, Poisson
    arrivals over ``duration_s`` seeded by ``seed``). One row per load: ``load``,
    ``offered_rps``, ``sent``, ``answered``, ``failed`` (non-200), ``goodput_rps`` (answers
    within budget per second), ``slo_attainment``, ``p50_ms``, ``p99_ms`` (answered
    requests, client round trip), ``seconds``, ``mean_batch`` (requests per
    ``@serve.batch`` call, all fragments) and ``mean_batch_by_entry``. Weights are seeded
    by ``weights_seed`` (Graft's default is 0)."""
    fragments = [(f.model, f.partition) for f in flows]
    with ray_serve(fragments, weights_seed=weights_seed, num_cpus=num_cpus) as (url, handles):
        t0 = time.perf_counter()
        _warm_up(url, sorted(set(fragments)), max(f.budget_ms for f in flows))
        log.info("warmed up in %.1f s", time.perf_counter() - t0)
        rows = []
        for load in loads:
            scaled = _scaled(flows, load)
            schedule = loadgen.poisson_schedule(scaled, duration_s, seed=seed)
            log.info("load x%g: %d requests over %g s", load, len(schedule), duration_s)
            before = _batch_stats(handles)
            report = asyncio.run(loadgen.run_open_loop(
                url, schedule, progress=loadgen.progress_stream(progress)))
            after = _batch_stats(handles)
            rows.append(_row(load, schedule, duration_s, report, before, after))
            log.info("load x%g: goodput %.1f req/s, attainment %.3f, mean batch %.2f", load,
                     rows[-1]["goodput_rps"], rows[-1]["slo_attainment"],
                     rows[-1]["mean_batch"])
    return rows


def _row(load: float, schedule: Sequence[loadgen.Send], duration_s: float,
         report: loadgen.Report, before: dict[str, tuple[int, int]],
         after: dict[str, tuple[int, int]]) -> dict[str, Any]:
    total = report.rows()[-1]
    delta = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}
    batches = sum(b for b, _ in delta.values())
    requests = sum(r for _, r in delta.values())
    return {
        "load": load,
        "offered_rps": len(schedule) / duration_s,
        "sent": total["sent"],
        "answered": total["answered"],
        "failed": total["failed"] + total["rejected"],
        "goodput_rps": total["goodput_rps"],
        "slo_attainment": total["slo_attainment"],
        "p50_ms": total["p50_ms"],
        "p99_ms": total["p99_ms"],
        "seconds": report.seconds,
        "mean_batch": requests / batches if batches else 0.0,
        "mean_batch_by_entry": {k: r / b if b else 0.0 for k, (b, r) in delta.items()},
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The rows as a markdown table."""
    lines = ["| load | offered req/s | answered | failed | goodput req/s | SLO attainment | "
             "p50 ms | p99 ms | mean batch | mean batch per entry |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        entries = r["mean_batch_by_entry"]
        one_model = len({k.rsplit(".", 1)[0] for k in entries}) == 1
        per = ", ".join(f"{k.rsplit('.', 1)[1] if one_model else k} {v:.2f}"
                        for k, v in entries.items())
        lines.append(f"| x{r['load']:g} | {r['offered_rps']:.1f} | {r['answered']} | "
                     f"{r['failed']} | {r['goodput_rps']:.1f} | {r['slo_attainment']:.3f} | "
                     f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['mean_batch']:.2f} | "
                     f"{per} |")
    return lines


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--partitions", default=",".join(map(str, DEFAULT_PARTITIONS)),
                    help="partition points, one flow each")
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE, help="req/s per flow at x1")
    ap.add_argument("--budget-ms", type=float, default=DEFAULT_BUDGET_MS)
    ap.add_argument("--loads", default=",".join(f"{v:g}" for v in DEFAULT_LOADS),
                    help="multipliers of every flow's rate, one run each")
    ap.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                    help="seconds of arrivals per load")
    ap.add_argument("--seed", type=int, default=1, help="seed of the Poisson arrivals")
    ap.add_argument("--output", default="bench/results/ray_serve.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    flows = default_flows(args.model, [int(p) for p in args.partitions.split(",")],
                          args.rate, args.budget_ms)
    t0 = time.perf_counter()
    rows = ray_serve_goodput(flows, _floats(args.loads), args.duration, args.seed,
                             progress=sys.stderr.isatty())
    took = time.perf_counter() - t0
    command = shlex.join(["python", "bench/ray_bench.py", *sys.argv[1:]])
    lines = [
        "# Ray Serve baseline: the same split-inference workload",
        "",
        f"Command: `{command}`. Machine: {platform.machine()}, {os.cpu_count()} cores "
        f"(shared by Ray, the replicas and the load generator), Python "
        f"{platform.python_version()}, CPU only. Date: {time.strftime('%Y-%m-%d')}. "
        f"Took {took:.0f} s, Ray start-up and shut-down included.",
        "",
        f"{args.model} split at blocks {args.partitions} ({args.rate:g} req/s each at x1, "
        f"budget {args.budget_ms:g} ms), Poisson arrivals for {args.duration:g} s per load, "
        "sent by Graft's load generator. Ray Serve: one deployment per fragment (1 replica, "
        f"1 torch thread, `@serve.batch(max_batch_size={MAX_BATCH_SIZE}, "
        f"batch_wait_timeout_s={BATCH_WAIT_S:g})`, max_ongoing_requests "
        f"{FRAGMENT_MAX_ONGOING}) behind one ingress deployment that speaks the v2 protocol "
        "and routes by path: HTTP proxy, ingress, fragment (one hop more than Graft). No "
        "deadlines: late answers are returned and counted as misses. Goodput: answers within "
        "budget per second; latencies are the client's round trip.",
        "",
        *table(rows),
        "",
    ]
    text = "\n".join(lines)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
