"""One node of a cluster: its part of the plan served by the single-node engine, behind
frontends that send requests on to other nodes (``Forwarder``).

``NodeServer`` is what every node's agent runs under ``graft serve --ray``
(``graft.runtime.cluster``); it needs no Ray, so tests run several on one machine.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from graft.cost.base import CostModel
from graft.runtime.engine import Engine
from graft.runtime.forward import Forwarder, Tables
from graft.runtime.nodeplans import NodePart
from graft.runtime.server import BackgroundServer, check_ports
from graft.wording import plural

log = logging.getLogger(__name__)


class NodeServer:
    """A node's engine (its ``NodePart``) and frontends, in a thread of this process::

        node = NodeServer(part, entries, cost, host=..., http_port=0)
        node.start()                 # workers ready, frontends bound
        node.set_urls({...})         # every node's HTTP address, once all are up
        node.install(part, entries)  # a new plan's part (hot swap), while serving
        node.stop()
    """

    def __init__(self, part: NodePart, entries: dict[tuple[str, int], tuple[str, ...]],
                 cost: CostModel, *, host: str = "127.0.0.1", http_port: int = 0,
                 grpc_port: int | None = None, device: str = "cpu",
                 weights: dict[str, str | None] | None = None, seed: int = 0,
                 admin_token: str | None = None) -> None:
        check_ports(host, (http_port, grpc_port))
        self.node = part.node
        self.engine = Engine(part.plan, part.workload, cost, device=device, weights=weights,
                             seed=seed)
        self.forwarder = Forwarder(self.engine, Tables(part.node, part.hops, entries, {}))
        self._server = BackgroundServer(self.engine, host=host, http_port=http_port,
                                        grpc_port=grpc_port, admin_token=admin_token,
                                        forwarder=self.forwarder)
        self.host = host

    def start(self) -> None:
        self._server.__enter__()
        log.info("node %s: %s, serving on %s", self.node,
                 plural(len(self.engine.plan.stages), "stage"), self.url)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def grpc_port(self) -> int | None:
        return self._server.grpc_port

    def set_urls(self, urls: dict[str, str]) -> None:
        """Every node's HTTP address (the forwarder sends requests there)."""
        self.forwarder.tables = replace(self.forwarder.tables, urls=dict(urls))

    def install(self, part: NodePart, entries: dict[tuple[str, int], tuple[str, ...]],
                urls: dict[str, str] | None = None) -> None:
        """Put a new plan's part in force (the engine's hot swap: the old workers drain),
        then the new forwarding tables. Blocking."""
        self.engine.swap(part.plan, part.workload)
        old = self.forwarder.tables
        self.forwarder.tables = Tables(part.node, part.hops, entries,
                                       dict(urls) if urls is not None else old.urls)
        log.info("node %s: installed a part of %s", self.node,
                 plural(len(part.plan.stages), "stage"))

    def stop(self) -> None:
        self._server.__exit__(None, None, None)
