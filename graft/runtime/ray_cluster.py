"""``graft serve --ray ADDRESS``: one plan served across the GPU nodes of a Ray cluster.

The **controller** (``RayController``, in the ``graft serve`` process, Ray's driver) reads
the cluster's GPU nodes (``plan.cluster.cluster_from_ray_nodes``), places the plan on them
(``graft plan --cluster``'s ``plan_on_cluster``, or a given plan's GPUs assigned to nodes),
cuts it per node (``nodeplans.split_plan``) and starts on every GPU node an **agent**: a Ray
actor pinned to that node (node affinity, holding the node's GPUs) that runs a
``node.NodeServer`` (the single-node engine on the node's part, its HTTP and gRPC frontends,
and forwarding). Ray places and supervises the agents; requests never pass through Ray: a
client sends them to any node's frontend, and between nodes they travel as Open Inference
Protocol requests (``forward.Forwarder``).

Every ``watch_period_s`` the controller compares Ray's alive GPU nodes with its agents. When
a node has left (or its agent died), the others stop sending to it at once (a request that
needed it is refused with 503, none waits), the workload is planned again on the nodes left,
and each agent installs its new part through the engine's hot swap; when a node has joined,
the next plan may use it and an agent starts there.

Ray is imported only here, and only by ``graft serve --ray`` (``pip install -e .[ray]``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.plan.cluster import Cluster, cluster_from_ray_nodes
from graft.plan.plan import Plan
from graft.planner.nodes import place_on_cluster, plan_on_cluster
from graft.runtime.nodeplans import ClusterParts, split_plan
from graft.wording import plural
from graft.workload.flows import Workload

log = logging.getLogger(__name__)

#: Agents of nodes that share an address (a local cluster: several Ray nodes on one host)
#: listen on ports this far apart: the k-th on a host takes ``port + k * PORT_STRIDE``.
PORT_STRIDE = 10
#: How long the controller waits for an agent to start (its node's GPUs free, its workers
#: ready), seconds.
AGENT_START_TIMEOUT_S = 300.0
#: The controller keeps this many of its most recent events.
EVENTS_KEPT = 100
#: How long the controller waits for its agents to answer a ping, seconds.
PING_TIMEOUT_S = 5.0


@dataclass
class AgentInfo:
    """A running agent: its Ray actor, its node's address, and where it serves."""

    actor: Any
    address: str
    #: which ``PORT_STRIDE`` step of the configured ports it took on its address
    slot: int = 0
    http_url: str = ""
    grpc_port: int | None = None


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Refuse at once a ``HOST:PORT`` nobody listens on (``ray.init`` would retry for
    minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise GraftInputError(f"--ray takes auto or HOST:PORT (the head node's GCS address, "
                              f"port 6379 by default), got {address!r}", field="ray")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise GraftInputError(f"no Ray cluster answers at {address}: "
                              f"{getattr(e, 'strerror', None) or e}", field="ray") from None


def _agent_class() -> Any:
    """The agent actor class (defined here so that Ray is imported only when used)."""
    import ray

    @ray.remote(num_cpus=0, max_concurrency=4)
    class NodeAgent:
        """A node's ``NodeServer``, run inside a Ray actor on that node."""

        def __init__(self) -> None:
            self.server = None

        def start(self, part: Any, entries: dict, cost_name: str, port: int,
                  grpc_port: int | None, device: str, weights: str | None, seed: int,
                  admin_token: str | None) -> dict:
            from graft.cost.registry import make_cost_model
            from graft.models.catalog import model_names
            from graft.runtime.node import NodeServer
            from graft.runtime.server import resolve_weights

            logging.basicConfig(level=logging.INFO)
            host = ray.util.get_node_ip_address()
            self.server = NodeServer(
                part, entries, make_cost_model(cost_name), host=host, http_port=port,
                grpc_port=grpc_port, device=device, seed=seed, admin_token=admin_token,
                weights=resolve_weights(weights, set(model_names()), strict=False))
            self.server.start()
            return {"http_url": self.server.url, "grpc_port": self.server.grpc_port}

        def set_urls(self, urls: dict) -> None:
            self.server.set_urls(urls)

        def install(self, part: Any, entries: dict, urls: dict) -> None:
            self.server.install(part, entries, urls)

        def ping(self) -> bool:
            return self.server is not None

        def summary(self) -> dict:
            return self.server.engine.summary()

        def stop(self) -> None:
            if self.server is not None:
                self.server.stop()
                self.server = None

    return NodeAgent


class RayController:
    """The plan, its agents and re-planning (see the module docstring)::

        ctl = RayController("auto", workload, cost, make_plan, plan=None)
        ctl.start()        # agents serving on every GPU node
        ctl.check()        # one watch step (``watch`` runs it every period in a thread)
        ctl.status()       # nodes, addresses, the plan in force
        ctl.stop()
    """

    def __init__(self, address: str, workload: Workload, cost: CostModel,
                 make_plan: Callable[[CostModel], Plan], *, plan: Plan | None = None,
                 port: int = 8000, grpc_port: int | None = 8001, device: str = "cpu",
                 weights: str | None = None, seed: int = 0, admin_token: str | None = None,
                 watch_period_s: float = 1.0) -> None:
        self.address = address
        self.workload = workload
        self.cost = cost
        self.make_plan = make_plan
        self.plan = plan
        self.port = port
        self.grpc_port = grpc_port
        self.device = device
        self.weights = weights
        self.seed = seed
        self.admin_token = admin_token
        self.watch_period_s = watch_period_s
        self.agents: dict[str, AgentInfo] = {}
        self.parts: ClusterParts | None = None
        #: what happened, newest last: (unix time, message)
        self.events: deque[tuple[float, str]] = deque(maxlen=EVENTS_KEPT)
        #: re-plans started, and plans put in force (the first included)
        self.replans = 0
        self.installed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_ray = False

    # --- start and stop -------------------------------------------------------------------
    def start(self) -> None:
        """Join the Ray cluster (``auto``: the one this machine belongs to, or a new one on
        this machine when none runs), plan on its GPU nodes and start the agents."""
        import ray

        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False)
            except ConnectionError as e:
                if self.address != "auto":
                    raise GraftInputError(f"no Ray cluster at {self.address!r} ({e}): start "
                                          "one with 'ray start --head --num-gpus N'") from None
                log.info("no Ray cluster runs here; starting one on this machine")
                ray.init(include_dashboard=False)
            self._started_ray = True
        try:
            self._agent = _agent_class()
            cluster, addresses = self._alive()
            plan = self._place(cluster)
            self._deploy(plan, cluster, addresses)
        except BaseException:
            self.stop()
            raise
        self._event(f"serving {plan.planner}'s plan (share {plan.total_share:.2f}, "
                    f"{plural(plan.gpus, 'GPU')}) on {plural(len(cluster.nodes), 'node')}")

    def _place(self, cluster: Cluster) -> Plan:
        """The plan to serve on ``cluster``: the given one (its GPUs assigned to the nodes
        unless it names exactly them), else the workload planned on it."""
        if self.plan is not None and self.replans == 0:
            if self.plan.cluster is not None and set(self.plan.gpu_nodes) <= {
                    n.name for n in cluster.nodes}:
                return self.plan
            rates = {f.id: f.rate for f in self.workload.flows}
            return place_on_cluster(self.plan, cluster, self.cost, rates)
        return plan_on_cluster(self.make_plan, self.workload, self.cost, cluster)

    def _alive(self) -> tuple[Cluster, dict[str, str]]:
        """Ray's alive GPU nodes, and each one's address."""
        import ray

        nodes = ray.nodes()
        cluster = cluster_from_ray_nodes(nodes)
        addresses = {str(n["NodeID"]): str(n.get("NodeManagerAddress", ""))
                     for n in nodes if n.get("Alive")}
        return cluster, addresses

    def _ports(self, names: list[str], addresses: dict[str, str]
               ) -> dict[str, tuple[int, int, int]]:
        """(HTTP, gRPC) port of each new node's agent: the configured ones, or, where
        agents already listen on the node's address, the first ``PORT_STRIDE`` step free
        there (0: any free port)."""
        used: dict[str, set[int]] = defaultdict(set)
        for info in self.agents.values():
            used[info.address].add(info.slot)
        out = {}
        for name in names:
            at = addresses.get(name, "")
            k = next(k for k in range(len(used[at]) + 1) if k not in used[at])
            used[at].add(k)
            out[name] = (self.port + k * PORT_STRIDE if self.port else 0,
                         self.grpc_port + k * PORT_STRIDE if self.grpc_port else 0, k)
        return out

    def _deploy(self, plan: Plan, cluster: Cluster, addresses: dict[str, str]) -> None:
        """Start agents on the nodes of ``cluster`` that have none, install ``plan``'s
        parts on the others, and tell every agent where the others are."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        parts = split_plan(plan, self.workload, self.cost)
        new = [n.name for n in cluster.nodes if n.name not in self.agents]
        ports = self._ports(new, addresses)
        gpus = {n.name: n.gpus for n in cluster.nodes}
        starting = {}
        for name in new:
            actor = self._agent.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=name, soft=False),
                num_gpus=gpus[name]).remote()
            http, grpc, slot = ports[name]
            starting[name] = actor.start.remote(
                parts.parts[name], parts.entries, self.cost.name, http,
                grpc if self.grpc_port else None, self.device, self.weights, self.seed,
                self.admin_token)
            self.agents[name] = AgentInfo(actor, addresses.get(name, ""), slot)
        old = [n for n in self.agents if n not in starting]
        for name, ref in starting.items():
            try:
                got = ray.get(ref, timeout=AGENT_START_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise GraftInputError(
                    f"the agent on node {name} did not start within "
                    f"{AGENT_START_TIMEOUT_S:g} s: are the node's GPUs held by other Ray "
                    "work?") from None
            self.agents[name].http_url = got["http_url"]
            self.agents[name].grpc_port = got["grpc_port"]
        urls = {n: a.http_url for n, a in self.agents.items()}
        ray.get([self.agents[n].actor.install.remote(parts.parts[n], parts.entries, urls)
                 for n in old] + [self.agents[n].actor.set_urls.remote(urls)
                                  for n in starting])
        with self._lock:
            self.plan, self.parts = plan, parts
            self.installed += 1

    def stop(self) -> None:
        import ray

        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        refs = [a.actor.stop.remote() for a in self.agents.values()]
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except Exception as e:  # noqa: BLE001 - an agent already gone
                log.debug("agent stop: %s", e)
        for a in self.agents.values():
            ray.kill(a.actor)
        self.agents.clear()
        if self._started_ray:
            ray.shutdown()

    # --- watching ---------------------------------------------------------------------------
    def watch(self) -> None:
        """Run ``check`` every ``watch_period_s`` in a thread until ``stop``."""
        def run() -> None:
            while not self._stop.wait(self.watch_period_s):
                try:
                    self.check()
                except Exception:  # noqa: BLE001 - logged; the next period tries again
                    log.exception("watching the cluster failed")
        self._thread = threading.Thread(target=run, name="graft-ray-watch", daemon=True)
        self._thread.start()

    def check(self) -> bool:
        """Compare Ray's alive GPU nodes (and the agents' answers) with the agents; on a
        change, plan again and install it. True when it re-planned."""
        import ray

        try:
            cluster, addresses = self._alive()
        except GraftInputError:
            cluster, addresses = Cluster(()), {}
        alive = {n.name for n in cluster.nodes}
        lost = [n for n in self.agents if n not in alive]
        pings = {self.agents[n].actor.ping.remote(): n for n in self.agents if n not in lost}
        answered, _ = (ray.wait(list(pings), num_returns=len(pings), timeout=PING_TIMEOUT_S)
                       if pings else ([], []))
        for ref, name in pings.items():
            try:
                if ref not in answered:
                    raise TimeoutError(f"no answer in {PING_TIMEOUT_S:g} s")
                ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a dead actor, or one that hangs
                log.warning("the agent of node %s does not answer: %s", name, e)
                lost.append(name)
        joined = [n for n in alive if n not in self.agents]
        if not lost and not joined:
            return False
        if lost:
            self._drop(lost)
        cluster = Cluster(tuple(n for n in cluster.nodes if n.name not in lost),
                          *self._network())
        if not cluster.nodes:
            self._event("no GPU node is left; requests are refused until one joins")
            return True
        self.replans += 1
        self._event(f"re-planning on {plural(len(cluster.nodes), 'node')}"
                    + (f" ({plural(len(lost), 'node')} left: {', '.join(lost)})" if lost else "")
                    + (f" ({plural(len(joined), 'node')} joined)" if joined else ""))
        t0 = time.perf_counter()
        try:
            plan = self._place(cluster)
        except GraftInputError as e:
            self._event(f"the workload does not fit on the nodes left ({e}); the old plan "
                        "serves what it still can")
            return True
        self._deploy(plan, cluster, addresses)
        self._event(f"new plan in force after {time.perf_counter() - t0:.1f} s: share "
                    f"{plan.total_share:.2f} on {plural(plan.gpus, 'GPU')}")
        return True

    def _network(self) -> tuple[float, float]:
        c = self.plan.cluster if self.plan is not None and self.plan.cluster else Cluster(())
        return c.network_gbps, c.network_latency_ms

    def _drop(self, lost: list[str]) -> None:
        """Forget the agents of ``lost`` nodes, and have the others stop sending to them."""
        import ray

        for name in lost:
            info = self.agents.pop(name)
            try:
                ray.kill(info.actor)
            except Exception as e:  # noqa: BLE001 - already gone
                log.debug("kill agent of %s: %s", name, e)
        urls = {n: a.http_url for n, a in self.agents.items()}
        refs = [a.actor.set_urls.remote(urls) for a in self.agents.values()]
        try:
            ray.get(refs, timeout=PING_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the next check finds the agent that failed
            log.warning("telling the agents about the lost nodes failed: %s", e)

    def _event(self, message: str) -> None:
        log.info("%s", message)
        with self._lock:
            self.events.append((time.time(), message))

    # --- what clients and Prometheus read ---------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The nodes, where each serves, and the plan in force (``GET /v2/admin/cluster``)."""
        with self._lock:
            plan, parts = self.plan, self.parts
            events = list(self.events)[-20:]
        nodes = []
        for name, info in list(self.agents.items()):  # a copy: the watch thread changes it
            part = parts.parts.get(name) if parts else None
            nodes.append({"node": name, "address": info.address, "http": info.http_url,
                          "grpc_port": info.grpc_port, "metrics": f"{info.http_url}/metrics",
                          "stages": [s.id for s in part.plan.stages] if part else [],
                          "entries": sorted({f"{f.model}.p{f.partition}"
                                             for f in part.workload.flows}) if part else []})
        return {
            "plan": None if plan is None else {
                "planner": plan.planner, "total_share": plan.total_share, "gpus": plan.gpus,
                "stages": len(plan.stages), "routes": len(plan.routes)},
            "replans": self.replans,
            "installed": self.installed,
            "nodes": nodes,
            "events": [{"at": at, "what": what} for at, what in events],
        }

    def prometheus_targets(self) -> list[dict[str, Any]]:
        """Every node's metrics endpoint in Prometheus' HTTP service discovery format."""
        return [{"targets": [info.http_url.split("://", 1)[-1]],
                 "labels": {"graft_node": name}}
                for name, info in list(self.agents.items()) if info.http_url]


def controller_app(controller: RayController) -> Any:
    """The controller's endpoints: ``GET /v2/admin/cluster`` (``RayController.status``) and
    ``GET /prometheus/targets`` (every node's ``/metrics``, for Prometheus'
    ``http_sd_configs``)."""
    import json

    from aiohttp import web

    async def cluster(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(controller.status()).encode(),
                            content_type="application/json")

    async def targets(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(controller.prometheus_targets()).encode(),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/admin/cluster", cluster)
    app.router.add_get("/prometheus/targets", targets)
    return app


def serve_on_ray(controller: RayController, *, host: str = "127.0.0.1",
                 cluster_port: int = 8010) -> None:
    """Start ``controller``'s agents, print where every node serves, watch the cluster and
    serve the controller's endpoints on ``host:cluster_port`` until SIGINT or SIGTERM."""
    import asyncio

    from aiohttp import web

    from graft.runtime.server import check_ports, until_stopped

    check_ports(host, (cluster_port,))
    controller.start()
    try:
        for n in controller.status()["nodes"]:
            print(f"node {n['node'][:12]}: {n['http']}"
                  + (f" (gRPC port {n['grpc_port']})" if n["grpc_port"] else "")
                  + f", {plural(len(n['stages']), 'stage')}", flush=True)
        controller.watch()

        async def run() -> None:
            runner = web.AppRunner(controller_app(controller), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, cluster_port).start()
            print(f"graft cluster controller on http://{host}:{cluster_port}/v2/admin/cluster",
                  flush=True)
            try:
                await until_stopped()
            finally:
                await runner.cleanup()

        asyncio.run(run())
    finally:
        controller.stop()
