"""The runtime engine: a plan's executors as worker processes, and requests through them.

``Engine(plan, workload, cost)`` starts one worker per executor of the plan
(``graft.serving.topology.build_executors``), routes each request with the simulator's rule
(``graft.serving.routing.Router``: the flow of its fragment whose budget fits, or a rejection
when its budget is below that route's least latency), hands it to the least-loaded replica
of its route's first stage, and resolves its future when the last stage's output comes back.
The workers of one plan form a ``Pool``: their queues, a listener thread that hands their
results to the event loop, and a watchdog. A new plan (``swap``: the admin endpoint, or
re-planning) gets a new pool while the old one drains; a pool whose worker died is replaced
by a fresh one of the same plan.

A request with several samples (a batch dimension above 1) travels as that many items and
completes when all have.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graft.cost.base import CostModel
from graft.plan.plan import TEMPORAL, Plan
from graft.runtime.metrics import ServerMetrics
from graft.runtime.replanner import ArrivalLog
from graft.runtime.worker import (
    Done,
    Failed,
    Item,
    Ran,
    Ready,
    StageSpec,
    Stopped,
    Work,
    WorkerSpec,
    add_load,
    now_ms,
    pack,
    run_worker,
)
from graft.serving.lifecycle import Request, RequestState
from graft.serving.metrics import summarize
from graft.serving.routing import Router
from graft.serving.topology import build_executors
from graft.wording import plural
from graft.workload.flows import Workload

log = logging.getLogger(__name__)

#: Seconds to wait for every worker to load its models and report ready.
START_TIMEOUT_S = 180.0
#: An executor holds at most this many of its largest batches queued; beyond it requests are
#: refused at once (503), as Triton's queue policy does, so that memory stays bounded and no
#: request waits past any deadline in a queue that cannot drain in time.
QUEUE_BATCHES = 16
#: A request with no answer this long after its deadline fails (it never hangs).
ANSWER_GRACE_S = 5.0
#: How often the watchdog checks that the workers are alive, seconds.
WATCH_PERIOD_S = 0.5
#: The engine keeps the outcomes of this many most recent requests for ``summary``.
OUTCOMES_KEPT = 200_000


class Rejected(Exception):
    """A request the server will not run: no route, a budget it cannot meet, or overload.
    ``reason`` is a short label for metrics."""

    def __init__(self, message: str, reason: str = "rejected") -> None:
        super().__init__(message)
        self.reason = reason


class RequestFailed(Exception):
    """A request that was admitted but could not be answered (late, or a worker failed)."""

    def __init__(self, message: str, reason: str = "failed") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Pending:
    """A request in flight: the future to resolve, and its samples' outputs so far."""

    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    first_key: int
    outputs: list[Any]
    left: int
    flow: str
    pool: Pool


@dataclass
class StageStats:
    """Batches a stage ran: count, samples and seconds, and per batch size how many ran and
    their seconds in all."""

    batches: int = 0
    samples: int = 0
    seconds: float = 0.0
    sizes: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    seconds_by_size: dict[int, float] = field(default_factory=lambda: defaultdict(float))

    def mean_ms(self, size: int) -> float | None:
        """Mean execution time of a batch of ``size``, ms (None if none ran)."""
        n = self.sizes.get(size, 0)
        return self.seconds_by_size[size] / n * 1000.0 if n else None


def available_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def pin_cpus(threads: list[int], cpus: list[int]) -> list[tuple[int, ...]]:
    """CPUs for workers of ``threads`` intra-op threads each: disjoint runs taken from the
    highest-numbered CPU down (the frontend keeps the low ones longest) when every thread
    fits on ``cpus``; otherwise none is pinned (empty), and the OS balances them."""
    if sum(threads) > len(cpus):
        return [()] * len(threads)
    order = cpus[::-1]
    out, at = [], 0
    for t in threads:
        out.append(tuple(sorted(order[at:at + t])))
        at += t
    return out


def worker_specs(plan: Plan, *, device: str, weights: dict[str, str | None], seed: int,
                 cpus: list[int] | None = None) -> list[WorkerSpec]:
    """One ``WorkerSpec`` per process of ``plan`` (``Plan.processes``, in that order). On
    CPU a worker's share of ``cpus`` (default: those this process may use) is its number of
    intra-op threads, pinned to CPUs of its own where the machine has them."""
    _, replicas = build_executors(plan)
    stages = plan.stage_by_id()
    routes = {r.flow: list(r.stages) for r in plan.routes}
    cpus = cpus or available_cpus()
    on_gpu = device == "cuda"
    processes = plan.processes()
    shares = [1.0 if plan.gpu_sharing == TEMPORAL else stages[proc.stages[0]].run_share
              for proc in processes]
    threads = [max(1, round(share * len(cpus))) for share in shares]
    pinned = pin_cpus(threads, cpus) if not on_gpu else [()] * len(threads)
    specs = []
    for index, proc in enumerate(processes):
        members = list(proc.stages)
        share = shares[index]
        specs.append(WorkerSpec(
            index=index,
            stages=[StageSpec(s, stages[s].model, stages[s].start, stages[s].end,
                              stages[s].batch) for s in dict.fromkeys(members)],
            members=members,
            threads=threads[index] if not on_gpu else 1,
            cpus=pinned[index],
            share=share,
            device=f"cuda:{proc.gpu or 0}" if on_gpu else device,
            mps_percentage=max(1, round(100 * share)) if on_gpu else None,
            weights={m: weights.get(m) for m in {stages[s].model for s in members}},
            seed=seed,
            routes=routes,
            replicas={s: list(v) for s, v in replicas.items()},
        ))
    return specs


@contextlib.contextmanager
def _spawning() -> Iterator[None]:
    """While workers are spawned: SIGINT blocked in this thread, so that they start with it
    blocked (a Ctrl-C reaches the whole process group, and one landing in a worker's
    interpreter start-up would kill it with a traceback; once running, workers ignore it and
    the parent stops them), and, on the main thread, a Ctrl-C held back until no spawn is
    half done (a child left reading half of its start-up data), then raised."""
    held: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = None
    if main:
        previous = signal.signal(signal.SIGINT, lambda sig, frame: held.append(sig))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if main:
            signal.signal(signal.SIGINT, previous if previous is not None
                          else signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


class Pool:
    """The worker processes of one plan: their queues, the shared ``loads`` array, a
    listener thread for their results and a watchdog that has the pool replaced when a
    worker dies (a worker killed while holding a queue's lock leaves it unusable, so the
    whole pool starts afresh)."""

    def __init__(self, engine: Engine, plan: Plan, workload: Workload, *, name: str):
        self.engine = engine
        self.plan = plan
        self.workload = workload
        self.name = name
        self.router = Router(plan, workload, engine.cost)
        self.routes = {r.flow: list(r.stages) for r in plan.routes}
        self.specs = worker_specs(plan, device=engine.device, weights=engine.weights,
                                  seed=engine.seed)
        #: per stage, the indices of the workers serving it
        self.replicas = self.specs[0].replicas if self.specs else {}
        #: per executor, the most items it may hold
        self.queue_cap = [QUEUE_BATCHES * max(s.batch for s in spec.stages)
                          for spec in self.specs]
        #: per fragment (model, partition), the tightest routed flow's budget (the default)
        self.default_budget_ms = {key: float(fr.budgets[0])
                                  for key, fr in self.router.fragments.items()}
        #: stages whose worker died: requests routed through them are refused
        self.broken: set[str] = set()
        self._ready: set[int] = set()
        self._ready_event = threading.Event()
        self._stopped = threading.Event()
        self.procs: list[Any] = []

    @property
    def fragments(self) -> list[tuple[str, int]]:
        return sorted(self.router.fragments)

    def start(self, timeout_s: float) -> None:
        import torch.multiprocessing as mp

        self._ctx = mp.get_context("spawn")
        n = len(self.specs)
        self.inboxes = [self._ctx.Queue() for _ in range(n)]
        self.results = self._ctx.Queue()
        # never block this process's exit on a queue nobody reads any more (a stopped or
        # dead worker's inbox with data still in its pipe)
        for q in (*self.inboxes, self.results):
            q.cancel_join_thread()
        self.loads = self._ctx.Array("i", n, lock=True)
        if not n:  # a node of a cluster that only forwards
            self._ready_event.set()
        try:
            with _spawning():
                for spec in self.specs:
                    self.procs.append(self._spawn(spec))
            self._listener = threading.Thread(target=self._listen,
                                              name=f"{self.name}-results", daemon=True)
            self._listener.start()
            ready = self._ready_event.wait(timeout_s)
        except BaseException:  # Ctrl-C while the workers start: none is left behind
            self._abort()
            raise
        if not ready:
            self.stop()
            raise RuntimeError(f"workers did not start within {timeout_s:g} s "
                               f"({len(self._ready)} of {n} ready)")
        self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog",
                                          daemon=True)
        self._watchdog.start()
        log.info("%s: plan %s (%s) on %s", self.name, self.plan.planner,
                 self.plan.cost_model, plural(n, "worker"))

    def _spawn(self, spec: WorkerSpec) -> Any:
        p = self._ctx.Process(target=run_worker, name=f"graft-{self.name}-{spec.index}",
                              args=(spec, self.inboxes[spec.index], self.inboxes,
                                    self.results, self.loads), daemon=True)
        p.start()
        return p

    def _abort(self, timeout_s: float = 5.0) -> None:
        """Stop at once, while starting: terminate every worker (they hold no request yet)
        and wait for each, killing those that outlive ``timeout_s``."""
        self._stopped.set()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout_s)
            if p.is_alive():
                p.kill()
                p.join(timeout_s)
        if getattr(self, "_listener", None) is not None:
            self.results.put(None)
            self._listener.join(timeout_s)

    def _watch(self) -> None:
        """When a worker dies, what it held is lost and its queue may be left locked: fail
        the requests whose route passes its stages, refuse new ones for those stages, and
        have the engine replace this pool with a fresh one of the same plan."""
        while not self._stopped.wait(WATCH_PERIOD_S):
            dead = [i for i, p in enumerate(self.procs) if not p.is_alive()]
            if not dead or self._stopped.is_set():
                continue
            lost = {m for i in dead for m in self.specs[i].members}
            log.error("%s: worker(s) %s died (%s); replacing the pool", self.name,
                      ", ".join(map(str, dead)), ", ".join(sorted(lost)))
            self.broken |= lost
            self.engine._fail_routes(self, lost, RequestFailed(
                "a worker serving its route died", "worker"))
            self.engine._recover(self)
            return

    def _listen(self) -> None:
        engine = self.engine
        while True:
            try:
                msg = self.results.get()
            except (EOFError, OSError, RuntimeError) as e:
                # a message from a worker that died while sending it: what it held is failed
                # by the watchdog
                log.warning("%s: lost a message from a worker: %s", self.name, e)
                continue
            if msg is None:
                return
            if isinstance(msg, Ready):
                self._ready.add(msg.index)
                if len(self._ready) == len(self.specs):
                    self._ready_event.set()
            elif isinstance(msg, Ran):
                engine._ran(msg.stage, msg.batch, msg.seconds)
            elif isinstance(msg, Done):
                y = msg.y if isinstance(msg.y, np.ndarray) else msg.y.numpy()
                for row, key in enumerate(msg.keys):
                    engine._deliver(key, y[row], None)
            elif isinstance(msg, Failed):
                for key in msg.keys:
                    engine._deliver(key, None, RequestFailed(msg.reason, "late"))
            elif isinstance(msg, Stopped):
                log.debug("%s: worker %d stopped", self.name, msg.index)

    def send(self, flow: str, items: list[Item], x: Any) -> None:
        """Hand ``items`` (their activations ``x``) to the least-loaded replica of the
        flow's first stage; ``Rejected`` when its queue is full."""
        if self.broken and self.broken & set(self.routes[flow]):
            raise Rejected("a worker of its route died; its replacement is starting",
                           "recovering")
        stage = self.routes[flow][0]
        target = min(self.replicas[stage], key=lambda k: self.loads[k])
        if self.loads[target] + len(items) > self.queue_cap[target]:
            raise Rejected(f"overloaded: {self.loads[target]} requests already wait for "
                           f"stage {stage}", "overloaded")
        add_load(self.loads, target, len(items))
        self.inboxes[target].put(Work(stage, x, items))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the workers after what they hold (those still running after ``timeout_s``
        in all are terminated)."""
        self._stopped.set()
        for i, q in enumerate(getattr(self, "inboxes", [])):
            if self.specs[i].members and not (set(self.specs[i].members) & self.broken):
                q.put(None)
        deadline = now_ms() + timeout_s * 1000.0
        for i, p in enumerate(self.procs):
            if set(self.specs[i].members) & self.broken:
                p.terminate()  # its queue may be locked by the worker that died
            p.join(max(0.0, (deadline - now_ms()) / 1000.0))
            if p.is_alive():
                p.terminate()
        if getattr(self, "_listener", None) is not None:
            self.results.put(None)
            self._listener.join(5.0)


class Engine:
    """Plans served by worker processes (see the module docstring): one pool of workers per
    plan in force, a new pool per swap while the old one drains."""

    def __init__(self, plan: Plan, workload: Workload, cost: CostModel, *,
                 device: str = "cpu", weights: dict[str, str | None] | None = None,
                 seed: int = 0):
        self.cost = cost
        self.device = device
        self.weights = weights or {}
        self.seed = seed
        self.stats: dict[str, StageStats] = defaultdict(StageStats)
        self.metrics = ServerMetrics()
        #: recent arrivals, for re-planning
        self.arrivals = ArrivalLog()
        #: the most recent requests' outcomes (lifecycle records), for ``summary``
        self.outcomes: deque[Request] = deque(maxlen=OUTCOMES_KEPT)
        self._record_ids = itertools.count()
        self._pending: dict[int, _Pending] = {}
        #: every in-flight sample's key -> the first key of its request
        self._owner_of: dict[int, int] = {}
        self._lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._next_key = 0
        self._epochs = 0
        self._recoveries = 0
        self.pool = self._new_pool(plan, workload)
        #: pools replaced by a swap, draining their requests
        self._draining: list[Pool] = []

    def _new_pool(self, plan: Plan, workload: Workload) -> Pool:
        self._epochs += 1
        return Pool(self, plan, workload, name=f"plan{self._epochs}")

    # --- what is in force ----------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        return self.pool.plan

    @property
    def workload(self) -> Workload:
        return self.pool.workload

    @property
    def router(self) -> Router:
        return self.pool.router

    @property
    def routes(self) -> dict[str, list[str]]:
        return self.pool.routes

    @property
    def fragments(self) -> list[tuple[str, int]]:
        """The (model, partition) points the plan in force serves, sorted."""
        return self.pool.fragments

    @property
    def default_budget_ms(self) -> dict[tuple[str, int], float]:
        return self.pool.default_budget_ms

    @property
    def restarts(self) -> int:
        """Pools replaced because a worker died."""
        return self._recoveries

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet answered."""
        return len(self._pending)

    # --- life cycle ---------------------------------------------------------------------
    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self.pool.start(timeout_s)
        self._plan_metric(self.pool.plan)

    def _plan_metric(self, plan: Plan) -> None:
        self.metrics.plan.clear()
        self.metrics.plan.labels(plan.planner, plan.cost_model, str(plan.gpus)).set(
            plan.total_share)

    def swap(self, plan: Plan, workload: Workload, *, timeout_s: float = START_TIMEOUT_S
             ) -> None:
        """Put ``plan`` in force while serving: its workers start, requests admitted from
        then on take it once they are ready, and the old workers stop after answering what
        they hold (no request fails or is lost because of the swap). Blocking: call it
        from a thread."""
        with self._swap_lock:
            self._replace(self.pool, plan, workload, timeout_s)

    def _replace(self, old: Pool, plan: Plan, workload: Workload, timeout_s: float) -> None:
        """Start a pool for ``plan``, put it in force, and drain ``old`` (under the swap
        lock)."""
        new = self._new_pool(plan, workload)
        new.start(timeout_s)
        self.pool = new
        self._plan_metric(plan)
        self._draining.append(old)
        threading.Thread(target=self._drain, args=(old,), name=f"{old.name}-drain",
                         daemon=True).start()

    def _recover(self, broken: Pool) -> None:
        """Replace a pool whose worker died by a fresh one of the same plan (in a thread);
        the broken pool's other routes keep serving until then."""
        def run() -> None:
            try:
                with self._swap_lock:
                    if self.pool is not broken:
                        return  # swapped away meanwhile
                    self._replace(broken, broken.plan, broken.workload, START_TIMEOUT_S)
                    self._recoveries += 1
            except Exception:  # noqa: BLE001 - logged; the broken pool keeps its routes
                log.exception("could not replace %s", broken.name)
        threading.Thread(target=run, name=f"{broken.name}-recover", daemon=True).start()

    def _drain(self, pool: Pool, poll_s: float = 0.05) -> None:
        """Stop ``pool`` once none of its requests is pending (at most the longest budget
        it serves plus the grace later)."""
        longest = max((float(fr.budgets[-1]) for fr in pool.router.fragments.values()),
                      default=0.0)
        limit = now_ms() + longest + ANSWER_GRACE_S * 1000.0
        while now_ms() < limit:
            with self._lock:
                if not any(p.pool is pool for p in self._pending.values()):
                    break
            threading.Event().wait(poll_s)
        pool.stop()
        with self._swap_lock:
            self._draining.remove(pool)
        log.info("%s: drained and stopped", pool.name)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every worker after what it holds; fail whatever is still pending."""
        for pool in [self.pool, *self._draining]:
            pool.stop(timeout_s)
        with self._lock:
            pending, self._pending = self._pending, {}
            self._owner_of.clear()
        for p in pending.values():
            _resolve(p, RequestFailed("the server stopped before answering", "stopped"))

    # --- requests -----------------------------------------------------------------------
    def admit(self, model: str, partition: int, budget_ms: float | None,
              pool: Pool | None = None) -> tuple[str, float]:
        """The flow a request takes and its budget; ``Rejected`` when it has no route or its
        budget is below that route's least latency."""
        pool = pool or self.pool
        key = (model, partition)
        if key not in pool.router.fragments:
            raise Rejected(f"the plan serves no {model} fragment from block {partition}",
                           "no_route")
        budget = pool.default_budget_ms[key] if budget_ms is None else budget_ms
        flow = pool.router.route(model, partition, budget)
        if flow is None:
            floor = pool.router.least_latency_ms(model, partition, budget)
            raise Rejected(f"a budget of {budget:.3f} ms is below the {floor:.3f} ms its route "
                           "takes on idle stages", "budget")
        return flow, budget

    def submit(self, model: str, partition: int, x: np.ndarray, budget_ms: float | None,
               loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """Send a request (``x``: samples x the activation shape at ``partition``); its
        future resolves to the outputs (samples x ...)."""
        import torch

        pool = self.pool
        flow, budget = self.admit(model, partition, budget_ms, pool)
        n = int(x.shape[0])
        deadline = now_ms() + budget
        with self._lock:
            first = self._next_key
            self._next_key += n
            future = loop.create_future()
            future.graft_key = first  # type: ignore[attr-defined]
            future.graft_budget_ms = budget  # type: ignore[attr-defined]
            future.graft_flow = flow  # type: ignore[attr-defined]
            self._pending[first] = _Pending(future, loop, first, [None] * n, n, flow, pool)
            for k in range(first, first + n):
                self._owner_of[k] = first
        items = [Item(first + i, flow, 0, deadline) for i in range(n)]
        try:
            pool.send(flow, items, pack(torch.from_numpy(np.array(x, copy=True))))
        except Rejected:
            self._forget(first)
            raise
        return future

    async def infer(self, model: str, partition: int, x: np.ndarray,
                    budget_ms: float | None = None) -> np.ndarray:
        """Run one request; ``Rejected`` or ``RequestFailed`` when it cannot be answered.
        Every outcome is counted in ``metrics`` and kept in ``outcomes``."""
        return (await self.infer_routed(model, partition, x, budget_ms))[0]

    async def infer_routed(self, model: str, partition: int, x: np.ndarray,
                           budget_ms: float | None = None) -> tuple[np.ndarray, str, float]:
        """``infer``, also saying which flow the request took and the budget it was
        given (a node of a cluster sends the output of a leg on with what is left)."""
        name = f"{model}.p{partition}"
        t0 = now_ms()
        given = (budget_ms if budget_ms is not None
                 else self.pool.default_budget_ms.get((model, partition)))
        if given is not None:
            self.arrivals.add(model, partition, given)
        # rewritten below once admission has picked the flow and the budget
        record = Request(next(self._record_ids), "(no route)", model, partition, t0,
                         t0 + (given or 0.0))
        try:
            future = self.submit(model, partition, x, budget_ms, asyncio.get_running_loop())
            budget = future.graft_budget_ms  # type: ignore[attr-defined]
            record.flow = future.graft_flow  # type: ignore[attr-defined]
            record.deadline_ms = t0 + budget
            try:
                y = await asyncio.wait_for(asyncio.shield(future),
                                           budget / 1000.0 + ANSWER_GRACE_S)
            except TimeoutError:
                self._forget(future.graft_key)  # type: ignore[attr-defined]
                raise RequestFailed(f"no answer {ANSWER_GRACE_S:g} s past its deadline",
                                    "timeout") from None
        except (Rejected, RequestFailed) as e:
            self.metrics.refuse(name, e.reason)
            record.state = (RequestState.REJECTED if isinstance(e, Rejected)
                            else RequestState.DROPPED)
            self._keep(record)
            raise
        record.completion_ms = now_ms()
        record.state = RequestState.COMPLETED
        self._keep(record)
        elapsed = record.completion_ms - t0
        self.metrics.answer(name, elapsed / 1000.0, elapsed <= budget)
        return y, record.flow, budget

    def _keep(self, record: Request) -> None:
        with self._lock:  # requests may come from more than one event loop
            self.outcomes.append(record)

    def recent(self) -> list[Request]:
        """The kept outcomes (``OUTCOMES_KEPT`` most recent), oldest first."""
        with self._lock:
            return list(self.outcomes)

    def summary(self) -> dict[str, Any]:
        """The recent requests' numbers, server-side times, by the simulator's own
        ``summarize``: attainment, p50/p99, rejections and drops, per flow and per model, and
        why requests missed (``misses``, the simulator's reasons)."""
        return summarize(self.recent(), self.cost)

    # --- results ------------------------------------------------------------------------
    def _ran(self, stage: str, batch: int, seconds: float) -> None:
        st = self.stats[stage]
        st.batches += 1
        st.samples += batch
        st.seconds += seconds
        st.sizes[batch] += 1
        st.seconds_by_size[batch] += seconds
        self.metrics.ran(stage, batch, seconds)

    def _deliver(self, key: int, y: np.ndarray | None, error: Exception | None) -> None:
        with self._lock:
            first = self._owner_of.pop(key, None)
            p = self._pending.get(first) if first is not None else None
            if p is None:
                return  # its request already failed
            if error is None:
                p.outputs[key - first] = y
                p.left -= 1
                if p.left:
                    return
            del self._pending[first]
            for k in range(first, first + len(p.outputs)):
                self._owner_of.pop(k, None)
        _resolve(p, error if error is not None else np.stack(p.outputs))

    def _fail_routes(self, pool: Pool, stages: set[str], error: Exception) -> None:
        """Fail the pending requests of ``pool`` whose route passes any of ``stages``."""
        with self._lock:
            hit = [first for first, q in self._pending.items()
                   if q.pool is pool and stages & set(pool.routes[q.flow])]
            failed = [self._pending.pop(first) for first in hit]
            for q in failed:
                for k in range(q.first_key, q.first_key + len(q.outputs)):
                    self._owner_of.pop(k, None)
        for q in failed:
            _resolve(q, error)

    def _forget(self, first: int) -> None:
        with self._lock:
            p = self._pending.pop(first, None)
            if p is not None:
                for k in range(first, first + len(p.outputs)):
                    self._owner_of.pop(k, None)

    def render_metrics(self) -> bytes:
        """The Prometheus exposition of this server's metrics (queue lengths read now)."""
        pool = self.pool
        self.metrics.queue.clear()
        if hasattr(pool, "loads"):
            for i in range(len(pool.specs)):
                self.metrics.queue.labels(str(i)).set(pool.loads[i])
        return self.metrics.render()


def _resolve(p: _Pending, value: Any) -> None:
    def done() -> None:
        if p.future.done():
            return
        if isinstance(value, Exception):
            p.future.set_exception(value)
        else:
            p.future.set_result(value)
    if not p.loop.is_closed():
        p.loop.call_soon_threadsafe(done)


def budget_from_timeout(timeout_us: int | None) -> float | None:
    return None if timeout_us is None else timeout_us / 1000.0

