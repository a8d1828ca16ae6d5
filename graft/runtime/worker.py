"""A stage worker: one process per executor of the plan (a stage replica, or one
time-shared slice whose member stages take turns), running its block ranges on real models.

It forms batches with the simulator's batching code (``graft.serving.batching.Executor``),
driven by wall-clock time: when idle it takes up to a stage's batch of queued requests FIFO
and runs them at once, never waiting for a batch to fill; a slice's members take turns. A
request already past its deadline when a batch forms is answered with an error instead of
being run (``drop_late``).

Messages (``torch.multiprocessing`` queues, so tensors travel in shared memory, or by CUDA
IPC on one GPU, and only their handles are pickled):

* to a worker's inbox: ``Work(stage, x, items)``, a tensor of ``len(items)`` activations
  entering ``stage``, or ``None`` to stop after what it holds;
* to the frontend's results queue: ``Done(keys, y)``, final outputs, ``Failed(keys,
  reason)``, ``Ran(stage, batch, seconds)`` for every batch, or ``Ready(index)`` /
  ``Stopped(index)``.

After a batch the worker sends each request on to the next stage of its route (one message
per next stage, to the replica with the least outstanding work in the shared ``loads``
array), or its output to the frontend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from graft.models.catalog import get_model
from graft.models.segments import SegmentRunner, green_stream
from graft.serving.batching import Executor

log = logging.getLogger(__name__)

#: How long an idle worker blocks on its inbox before checking again, seconds.
IDLE_WAIT_S = 0.05
#: Tensors smaller than this travel pickled through the queue's pipe (one copy, about
#: 0.15 ms a hop here); larger ones in shared memory (a file descriptor passed, about 1.2 ms a
#: hop whatever the size), measured on this 2-core machine.
SHARED_MEMORY_BYTES = 256 * 1024


def pack(x: Any) -> Any:
    """A tensor ready for a queue: a numpy array when small, else the (CPU shared-memory or
    CUDA IPC) tensor itself."""
    if x.device.type == "cpu" and x.element_size() * x.nelement() < SHARED_MEMORY_BYTES:
        return x.numpy()
    return x


def unpack(x: Any) -> Any:
    """The tensor a ``pack``-ed value stands for."""
    import torch

    return torch.from_numpy(x) if not isinstance(x, torch.Tensor) else x


def now_ms() -> float:
    """The runtime's clock: monotonic, shared by every process on the host."""
    return time.monotonic() * 1000.0


@dataclass(slots=True)
class Item:
    """One request at one stage: its key at the frontend, its flow, the index of this stage
    in the flow's route, its deadline (``now_ms`` clock)."""

    key: int
    flow: str
    index: int
    deadline_ms: float


@dataclass(slots=True)
class _Queued:
    """An item with its activation, in an executor queue."""

    item: Item
    x: Any
    deadline_ms: float


@dataclass
class Work:
    stage: str
    x: Any
    items: list[Item]


@dataclass
class Done:
    keys: list[int]
    y: Any


@dataclass
class Failed:
    keys: list[int]
    reason: str


@dataclass
class Ran:
    """One batch a worker ran: its stage, size and seconds (for metrics)."""

    stage: str
    batch: int
    seconds: float


@dataclass
class Ready:
    index: int


@dataclass
class Stopped:
    index: int


@dataclass
class StageSpec:
    """What a worker runs for one member stage."""

    id: str
    model: str
    start: int
    end: int
    batch: int


@dataclass
class WorkerSpec:
    """Everything a worker process needs, picklable."""

    index: int
    stages: list[StageSpec]
    #: member stage ids in turn order (a stage may appear twice: two turns per round)
    members: list[str]
    threads: int
    device: str
    #: model -> state_dict path (None: seeded random weights)
    weights: dict[str, str | None]
    seed: int
    #: flow -> its route's stage ids
    routes: dict[str, list[str]]
    #: stage -> the executor indices serving it
    replicas: dict[str, list[int]]
    #: on CUDA, the MPS active-thread percentage of the worker's share (read by MPS when the
    #: process creates its CUDA context; it only binds when an MPS control daemon runs)
    mps_percentage: int | None = None
    #: on CPU, the CPUs the worker is pinned to (empty: not pinned)
    cpus: tuple[int, ...] = ()
    #: the worker's part of its device (a green context's SMs when MPS is not running)
    share: float = 1.0
    #: on CUDA, replay block ranges from CUDA graphs (``graft.models.segments``)
    cuda_graphs: bool = True


def add_load(loads: Any, index: int, delta: int) -> None:
    """Change an executor's outstanding work in the shared ``loads`` array."""
    with loads.get_lock():
        loads[index] += delta


def _pick(indices: list[int], loads: Any) -> int:
    """The replica with the least outstanding work (the first on ties)."""
    if len(indices) == 1:
        return indices[0]
    return min(indices, key=lambda k: loads[k])


def run_worker(spec: WorkerSpec, inbox: Any, inboxes: list[Any], results: Any,
               loads: Any) -> None:
    """The worker process's main function."""
    import signal

    if spec.mps_percentage is not None:  # before torch creates the CUDA context
        os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(spec.mps_percentage)
    import torch

    # Ctrl-C reaches the whole process group: the frontend stops the workers in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from graft.models.chains import build_chain

    if spec.cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):  # CPUs not available here: run unpinned
            os.sched_setaffinity(0, spec.cpus)
    torch.set_num_threads(max(1, spec.threads))
    device = torch.device(spec.device)
    chains = {m: build_chain(m, seed=spec.seed, state_dict_path=spec.weights.get(m)).to(device)
              for m in sorted({s.model for s in spec.stages})}
    stages = {s.id: s for s in spec.stages}
    green = None
    if device.type == "cuda":
        from graft.cost.profiler import mps_daemon_running

        if not mps_daemon_running():
            green = green_stream(spec.share, device)
    with contextlib.ExitStack() as scope:
        if green is not None:
            scope.enter_context(torch.cuda.stream(green[1]))
        scope.enter_context(torch.inference_mode())
        runners = {s.id: SegmentRunner(chains[s.model], s.start, s.end, s.batch,
                                       tuple(get_model(s.model).in_shape(s.start)), device,
                                       graphs=spec.cuda_graphs)
                   for s in spec.stages}
        _warm_up(runners, spec.stages, device)
        results.put(Ready(spec.index))
        _serve(spec, inbox, inboxes, results, loads, runners, stages, device)
    results.put(Stopped(spec.index))


def _serve(spec: WorkerSpec, inbox: Any, inboxes: list[Any], results: Any, loads: Any,
           runners: dict[str, SegmentRunner], stages: dict[str, StageSpec], device: Any
           ) -> None:
    """The worker's loop: receive, batch with ``serving.batching``, run, hand on."""
    import torch

    executor: Executor[_Queued] = Executor(spec.members, {s.id: s.batch for s in spec.stages})
    stopping = False
    parent = os.getppid()
    with torch.inference_mode():
        while True:
            stopping |= _receive(inbox, executor, device, block=not executor.queued)
            if not executor.queued:
                if stopping:
                    break
                if os.getppid() != parent:  # the server was killed (SIGKILL): nobody reads
                    log.warning("worker %d: the server is gone; exiting", spec.index)
                    break
                continue
            turn = executor.next_turn(now_ms(), drop_late=True)
            if turn.dropped:
                add_load(loads, spec.index, -len(turn.dropped))
                results.put(Failed([q.item.key for q in turn.dropped],
                                   "past its deadline before its batch formed"))
            if turn.stage is None:
                continue
            st = stages[turn.stage]
            t0 = time.perf_counter()
            x = torch.stack([q.x for q in turn.items])
            y = runners[st.id](x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            add_load(loads, spec.index, -len(turn.items))
            results.put(Ran(st.id, len(turn.items), seconds))
            _forward(spec, turn.items, y, inboxes, results, loads)


def _warm_up(runners: dict[str, SegmentRunner], stages: list[StageSpec], device: Any) -> None:
    """Run every stage once at batch 1 and at its batch, so that the first requests do not
    pay for lazy initialisation (allocator, kernels, thread pools)."""
    import torch

    with torch.inference_mode():
        for st in stages:
            shape = get_model(st.model).in_shape(st.start)
            for b in sorted({1, st.batch}):
                runners[st.id](torch.zeros((b, *shape), device=device))


def _receive(inbox: Any, executor: Executor, device: Any, *, block: bool) -> bool:
    """Move every waiting message into the executor's queues; True on a stop message."""
    stop = False
    try:
        msg = inbox.get(timeout=IDLE_WAIT_S) if block else inbox.get_nowait()
        while True:
            if msg is None:
                stop = True
            else:
                x = unpack(msg.x).to(device, non_blocking=True)
                for row, item in enumerate(msg.items):
                    executor.enqueue(msg.stage, _Queued(item, x[row], item.deadline_ms))
            msg = inbox.get_nowait()
    except queue.Empty:
        pass
    executor.busy = False  # the worker loop itself decides when to run
    return stop


def _forward(spec: WorkerSpec, queued: list[_Queued], y: Any, inboxes: list[Any],
             results: Any, loads: Any) -> None:
    """Send each request of a finished batch to its next stage, or its output home."""
    onward: dict[str, list[int]] = defaultdict(list)
    home: list[int] = []
    for row, q in enumerate(queued):
        route = spec.routes[q.item.flow]
        if q.item.index + 1 < len(route):
            onward[route[q.item.index + 1]].append(row)
        else:
            home.append(row)
    for stage, rows in onward.items():
        target = _pick(spec.replicas[stage], loads)
        items = [Item(queued[r].item.key, queued[r].item.flow, queued[r].item.index + 1,
                      queued[r].item.deadline_ms) for r in rows]
        add_load(loads, target, len(items))
        inboxes[target].put(Work(stage, pack(y[rows].contiguous()), items))
    if home:
        results.put(Done([queued[r].item.key for r in home],
                         pack(y[home].cpu().contiguous())))
