"""A cluster: nodes with GPUs, and the network between them.

A plan served on one machine needs none of this. A plan served on several (``graft plan
--cluster CLUSTER.json``) states the cluster and the node of every GPU it uses
(``Plan.cluster``, ``Plan.gpu_nodes``): a hand-off between stages whose replicas sit on
different nodes crosses the network, at the bandwidth and latency the cluster states
(``graft.plan.rules``).

The JSON format::

    {"nodes": [{"name": "node0", "gpus": 8}, {"name": "node1", "gpus": 8}],
     "network_gbps": 100, "network_latency_ms": 0.05}

``network_gbps`` is the bandwidth one hand-off gets between two nodes, one way, in Gbit/s
(default 100: one 100 GbE link); ``network_latency_ms`` the fixed cost of one hand-off
across it (default 0.05 ms: a TCP round trip between two hosts of one rack, an assumption).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from graft import fields, limits
from graft.errors import GraftInputError

DEFAULT_NETWORK_GBPS = 100.0
DEFAULT_NETWORK_LATENCY_MS = 0.05
CLUSTER_FIELDS = ("nodes", "network_gbps", "network_latency_ms")
NODE_FIELDS = ("name", "gpus")


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, ...]
    network_gbps: float = DEFAULT_NETWORK_GBPS
    network_latency_ms: float = DEFAULT_NETWORK_LATENCY_MS

    @property
    def network_bytes_per_s(self) -> float:
        return self.network_gbps * 1e9 / 8

    @property
    def gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    def without(self, name: str) -> Cluster:
        """The cluster after node ``name`` left."""
        if all(n.name != name for n in self.nodes):
            raise GraftInputError(f"no node named {name!r} in the cluster")
        return replace(self, nodes=tuple(n for n in self.nodes if n.name != name))

    def to_json(self) -> dict:
        return {"nodes": [{"name": n.name, "gpus": n.gpus} for n in self.nodes],
                "network_gbps": self.network_gbps,
                "network_latency_ms": self.network_latency_ms}

    @classmethod
    def from_json(cls, d: Any, where: str = "cluster.") -> Cluster:
        fields.obj(d, "cluster", CLUSTER_FIELDS, prefix=where)
        raw = fields.array(d, "nodes", where)
        if not raw:
            raise GraftInputError("must name at least one node", field=f"{where}nodes")
        nodes = []
        for i, n in enumerate(raw):
            at = f"{where}nodes[{i}]."
            fields.obj(n, "node", NODE_FIELDS, prefix=at)
            nodes.append(Node(fields.string(n, "name", at),
                              fields.integer(n, "gpus", at, minimum=1)))
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            dup = next(x for x in names if names.count(x) > 1)
            raise GraftInputError(f"node {dup!r} is named twice", field=f"{where}nodes")
        cluster = cls(tuple(nodes),
                      fields.number(d, "network_gbps", where, default=DEFAULT_NETWORK_GBPS,
                                    minimum=0, exclusive=True),
                      fields.number(d, "network_latency_ms", where,
                                    default=DEFAULT_NETWORK_LATENCY_MS, minimum=0))
        limits.GPUS.check(cluster.gpus, "the cluster has {}", field=f"{where}nodes")
        return cluster


def load_cluster(path: str) -> Cluster:
    """A cluster from a JSON file, or from a running Ray cluster: ``ray:ADDRESS`` (``ray:auto``
    for the one this machine belongs to; needs ``pip install -e .[ray]``)."""
    if path.startswith("ray:"):
        return cluster_from_ray(path[len("ray:"):] or "auto")
    from graft.jsonio import load_json

    return Cluster.from_json(load_json(path, "cluster"), where="")


def cluster_from_ray_nodes(nodes: list[dict[str, Any]]) -> Cluster:
    """The alive nodes of ``ray.nodes()`` that have GPUs (Ray's ``GPU`` resource, declared
    or detected), each named by its Ray node id (hosts may share a name or address)."""
    found = []
    for n in nodes:
        gpus = int(n.get("Resources", {}).get("GPU", 0))
        if n.get("Alive") and gpus > 0:
            found.append(Node(str(n["NodeID"]), gpus))
    if not found:
        raise GraftInputError("the Ray cluster has no alive node with GPUs (Ray's 'GPU' "
                              "resource: start nodes with --num-gpus N)")
    return Cluster(tuple(sorted(found, key=lambda n: n.name)))


def cluster_from_ray(address: str) -> Cluster:
    """The GPU nodes of the Ray cluster at ``address`` (``auto``: this machine's)."""
    try:
        import ray
    except ImportError:
        raise GraftInputError("a Ray cluster needs Ray: pip install -e .[ray]") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        return cluster_from_ray_nodes(ray.nodes())
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class Placement:
    """Where a plan's GPUs sit: its cluster, and the node (an index into ``cluster.nodes``)
    of each GPU by index."""

    cluster: Cluster
    gpu_nodes: tuple[int, ...]

    def spans_nodes(self, gpus: set[int] | tuple[int, ...]) -> bool:
        """Whether ``gpus`` lie on more than one node."""
        return len({self.gpu_nodes[g] for g in gpus if 0 <= g < len(self.gpu_nodes)}) > 1
