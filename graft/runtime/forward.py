"""A node of a cluster: requests served here, or sent on to the node that serves them.

``Forwarder`` stands between a node's frontends and its engine (``graft serve --ray``). A
request for a fragment entry this node has a leg for runs on the local engine; when that
leg's route goes on on another node (``nodeplans.Hop``), its output is sent there as a
request to the entry where the next stage starts, with what is left of the budget as
``parameters.timeout``. A request for an entry this node has no leg for is sent to a node
that has one. Between nodes the request path is the runtime's own Open Inference Protocol
over HTTP (binary tensors), not Ray.

A node that does not answer (it left the cluster) is skipped for the next one serving the
entry; when none answers, the request is refused at once (503): none waits on a lost node.
A forwarded request carries ``Graft-Hops``; past ``MAX_HOPS`` (tables out of date while a new
plan is installed) it is refused rather than sent round again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass

import numpy as np

from graft.runtime.engine import ANSWER_GRACE_S, Engine, Rejected, RequestFailed
from graft.runtime.nodeplans import Hop
from graft.runtime.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_response,
    encode_request,
)
from graft.runtime.repository import INPUT_NAME, OUTPUT_NAME, model_name
from graft.runtime.worker import now_ms

log = logging.getLogger(__name__)

#: The request header that counts how many times a request was forwarded.
HOPS_HEADER = "Graft-Hops"
#: A request forwarded more often than this is refused (a route crosses each node at most
#: once per stage; more means the nodes' tables disagree while a plan is installed).
MAX_HOPS = 16


@dataclass(frozen=True)
class Tables:
    """What a node knows of the cluster's plan: its legs' hops, the nodes with a leg
    entering at each fragment entry, and every node's HTTP address."""

    node: str
    hops: dict[str, Hop]
    entries: dict[tuple[str, int], tuple[str, ...]]
    urls: dict[str, str]


class Forwarder:
    """A node's requests: its engine's legs, and forwarding (see the module docstring).
    ``tables`` is replaced as a whole when a new plan is installed."""

    def __init__(self, engine: Engine, tables: Tables) -> None:
        self.engine = engine
        self.tables = tables
        self._turn = itertools.count()
        self._session = None

    @property
    def fragments(self) -> list[tuple[str, int]]:
        """Every entry the cluster serves (here or on another node), sorted."""
        return sorted(set(self.tables.entries) | set(self.engine.fragments))

    def nodes_serving(self, model: str, partition: int) -> list[dict[str, str]]:
        """The nodes with a leg entering at (model, partition), and their addresses: where a
        client may send such requests directly."""
        t = self.tables
        return [{"node": n, "url": t.urls.get(n, "")} for n in t.entries.get((model, partition),
                                                                           ())]

    async def infer(self, model: str, partition: int, x: np.ndarray,
                    budget_ms: float | None = None, hops: int = 0) -> np.ndarray:
        """The output of the request's whole route, whichever nodes run it."""
        t0 = now_ms()
        tables = self.tables
        if (model, partition) in self.engine.router.fragments:
            y, flow, budget = await self.engine.infer_routed(model, partition, x, budget_ms)
            hop = tables.hops.get(flow)
            if hop is None:
                return y
            return await self._send(tables, hop.model, hop.partition, hop.nodes, y,
                                    budget - (now_ms() - t0), hops + 1)
        nodes = tuple(n for n in tables.entries.get((model, partition), ())
                      if n != tables.node)
        if not nodes:
            self.engine.metrics.refuse(model_name(model, partition), "no_route")
            raise Rejected(f"no node of the cluster serves {model} from block {partition}",
                           "no_route")
        return await self._send(tables, model, partition, nodes, x, budget_ms, hops + 1)

    async def _send(self, tables: Tables, model: str, partition: int, nodes: tuple[str, ...],
                    x: np.ndarray, budget_ms: float | None, hops: int) -> np.ndarray:
        """``x`` as a request to (model, partition) on one of ``nodes`` (in turns; a node
        that does not answer is skipped for the next)."""
        name = model_name(model, partition)
        if hops > MAX_HOPS:
            raise Rejected(f"{name}: forwarded {hops} times; the nodes' plans disagree while "
                           "a new plan is installed", "forwarding")
        if budget_ms is not None and budget_ms <= 0:
            self.engine.metrics.refuse(name, "late")
            raise RequestFailed(f"no budget left to send {name} on to another node", "late")
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        body, length = encode_request([(INPUT_NAME, np.asarray(x, np.float32))], [OUTPUT_NAME],
                                      None if budget_ms is None
                                      else max(1, int(budget_ms * 1000)))
        wait = aiohttp.ClientTimeout(total=(budget_ms or 0.0) / 1000.0 + ANSWER_GRACE_S)
        start = next(self._turn)
        tried = []
        for i in range(len(nodes)):
            node = nodes[(start + i) % len(nodes)]
            url = tables.urls.get(node)
            if url is None:
                continue
            tried.append(node)
            try:
                async with self._session.post(
                        f"{url}/v2/models/{name}/infer", data=body,
                        headers={HEADER_LENGTH: str(length), HOPS_HEADER: str(hops),
                                 "Content-Type": "application/octet-stream"},
                        timeout=wait) as resp:
                    payload = await resp.read()
                    status = resp.status
                    header = resp.headers.get(HEADER_LENGTH)
            except (asyncio.TimeoutError, TimeoutError):  # before OSError: it is one
                self.engine.metrics.forwarded.labels(node, "timeout").inc()
                raise RequestFailed(f"node {node} did not answer {name} in time",
                                    "timeout") from None
            except (aiohttp.ClientConnectionError, OSError) as e:
                log.warning("node %s (%s) does not answer: %s", node, url, e)
                continue
            self.engine.metrics.forwarded.labels(node, str(status)).inc()
            if status == 200:
                try:
                    return decode_response(payload, header)[OUTPUT_NAME]
                except (ProtocolError, KeyError, ValueError) as e:
                    raise RequestFailed(f"node {node} answered {name} with a bad body: {e}",
                                        "forwarding") from None
            message = _message(payload)
            if status == 503:
                raise Rejected(f"node {node}: {message}", "forwarded")
            raise RequestFailed(f"node {node} answered {status}: {message}", "forwarded")
        self.engine.metrics.forwarded.labels("none", "unreachable").inc()
        raise Rejected(f"no node serving {name} answers (tried "
                       f"{', '.join(tried) or 'none'}); the cluster is re-planning",
                       "node_lost")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _message(payload: bytes) -> str:
    """The ``error`` of a v2 error body, or its text."""
    import json

    try:
        return str(json.loads(payload)["error"])
    except (ValueError, KeyError, TypeError):
        return payload[:200].decode(errors="replace")
