"""``graft serve``: start a plan's workers and its frontends, and serve until stopped.

A plan served without its workload takes each flow's budget from its route
(``repository.workload_of``). Weights: a torchvision-format state_dict file (single-model
plans), a folder of ``<model>.pt`` files, or seeded random weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.models.catalog import model_names
from graft.plan.plan import Plan
from graft.planner.base import Planner
from graft.runtime.engine import Engine
from graft.runtime.forward import Forwarder
from graft.runtime.grpc import start_grpc
from graft.runtime.http import make_app
from graft.runtime.replanner import Replanner
from graft.runtime.repository import workload_of
from graft.serving.replan import ReplanConfig
from graft.wording import plural
from graft.workload.flows import Workload

log = logging.getLogger(__name__)


def resolve_weights(path: str | None, models: set[str], *, strict: bool = True
                    ) -> dict[str, str | None]:
    """model -> state_dict file: ``path`` itself for a single-model plan, or
    ``<path>/<model>.pt`` for each model (with ``strict``, every one must be there); nothing
    without ``path``."""
    if path is None:
        return {}
    p = Path(path)
    if p.is_dir():
        out: dict[str, str | None] = {}
        for m in sorted(models):
            f = p / f"{m}.pt"
            if f.is_file():
                out[m] = str(f)
            elif strict:
                raise GraftInputError(f"--weights folder {path} has no {m}.pt", field="weights")
        return out
    if not p.is_file():
        raise GraftInputError(f"--weights {path} is neither a file nor a folder",
                              field="weights")
    if len(models) != 1:
        raise GraftInputError(f"--weights names one file but the plan runs {len(models)} "
                              f"models ({', '.join(sorted(models))}): give a folder of "
                              "<model>.pt files", field="weights")
    return {next(iter(models)): str(p)}


def check_ports(host: str, ports: Iterable[int | None]) -> None:
    """Refuse, before any worker starts, a port ``host`` cannot listen on (in use, no
    permission, an address this machine does not have); None and 0 (any free port) pass."""
    for port in ports:
        if not port:
            continue
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in addresses:
                with socket.socket(family, kind, proto) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio
                    if family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind(address)
        except (OSError, UnicodeError) as e:
            raise GraftInputError(f"cannot listen on {host}:{port}: "
                                  f"{getattr(e, 'strerror', None) or e}") from None


@dataclass
class Frontends:
    """The running HTTP and gRPC servers of one engine, and the ports they bound."""

    runner: web.AppRunner
    grpc: Any
    http_port: int
    grpc_port: int | None
    forwarder: Forwarder | None = None

    async def close(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=1.0)
        await self.runner.cleanup()
        if self.forwarder is not None:
            await self.forwarder.close()


async def start_frontends(engine: Engine, host: str, http_port: int,
                          grpc_port: int | None, admin_token: str | None = None,
                          forwarder: Forwarder | None = None) -> Frontends:
    """Start HTTP on ``http_port`` and gRPC on ``grpc_port`` (None: no gRPC; 0: any free
    port) on the running loop; the admin endpoints take ``admin_token`` (None: off). On a
    node of a cluster, requests go through ``forwarder``."""
    runner = web.AppRunner(make_app(engine, admin_token, forwarder), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, http_port).start()
        bound_http = runner.addresses[0][1]
        server, bound_grpc = (None, None) if grpc_port is None else await start_grpc(
            engine, host, grpc_port, forwarder)
    except OSError as e:
        await runner.cleanup()
        raise GraftInputError(f"cannot listen on {host}: {e.strerror or e}") from None
    return Frontends(runner, server, bound_http, bound_grpc, forwarder)


class BackgroundServer:
    """An engine and its frontends served from this process, on an event loop in a thread
    of its own, for code that drives the server from the same process (the demo, the
    benchmarks, tests)::

        with BackgroundServer(engine, grpc_port=0) as srv:
            ... srv.url, srv.http_port, srv.grpc_port ...

    Entering starts the engine (unless it already runs) and binds free ports (0); leaving
    closes the frontends and stops the engine."""

    def __init__(self, engine: Engine, *, host: str = "127.0.0.1", http_port: int = 0,
                 grpc_port: int | None = None, admin_token: str | None = None,
                 start_engine: bool = True, forwarder: Forwarder | None = None) -> None:
        self.engine = engine
        self._args = (host, http_port, grpc_port, admin_token, forwarder)
        self._start_engine = start_engine
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graft-frontends", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.fronts = self._loop.run_until_complete(start_frontends(self.engine,
                                                                        *self._args))
        except BaseException as e:  # noqa: BLE001 - handed to the entering thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.fronts.close())

    def __enter__(self) -> BackgroundServer:
        if self._start_engine:
            self.engine.start()
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            self.engine.stop()
            raise self._error
        self.http_port = self.fronts.http_port
        self.grpc_port = self.fronts.grpc_port
        self.url = f"http://{self._args[0]}:{self.http_port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.engine.stop()


async def _serve(engine: Engine, host: str, port: int, grpc_port: int | None,
                 admin_token: str | None) -> None:
    fronts = await start_frontends(engine, host, port, grpc_port, admin_token)
    names = ", ".join(f"{m}.p{p}" for m, p in engine.fragments)
    print(f"graft serving {names} on http://{host}:{fronts.http_port}"
          + (f" and grpc://{host}:{fronts.grpc_port}" if fronts.grpc_port else ""), flush=True)
    try:
        await until_stopped()
    finally:
        await fronts.close()


async def until_stopped() -> None:
    """Return when the process gets SIGINT or SIGTERM (on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def serve(plan: Plan, workload: Workload | None, cost: CostModel, *, host: str = "127.0.0.1",
          port: int = 8000, grpc_port: int | None = 8001, device: str = "cpu",
          weights: str | None = None, seed: int = 0, admin_token: str | None = None,
          replan: ReplanConfig | None = None, planner: Planner | None = None) -> None:
    """Serve ``plan`` until SIGINT or SIGTERM; with ``replan``, re-plan the observed
    arrivals with ``planner`` every ``replan.period_s``."""
    check_ports(host, (port, grpc_port))
    models = {s.model for s in plan.stages}
    if replan is not None:  # a re-plan may route any model: load weights for all of them
        models = set(model_names())
    engine = Engine(plan, workload if workload is not None else workload_of(plan), cost,
                    device=device, weights=resolve_weights(weights, models, strict=replan is None),
                    seed=seed)
    log.info("starting %s (pid %d)", plural(len(plan.stages), "worker"), os.getpid())
    engine.start()
    replanner = None
    if replan is not None and planner is not None:
        replanner = Replanner(engine, planner, replan)
        replanner.start()
    try:
        asyncio.run(_serve(engine, host, port, grpc_port, admin_token))
    finally:
        if replanner is not None:
            replanner.stop()
        engine.stop()
