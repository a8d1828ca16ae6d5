"""The HTTP frontend: the Open Inference Protocol (KServe v2) as Triton serves it, on aiohttp.

The model entries are the plan's fragments (``graft.runtime.repository``). Endpoints:
``/v2/health/live``, ``/v2/health/ready``, ``/v2`` (server metadata),
``/v2/models/{name}[/versions/{v}]`` (metadata), ``.../ready``, ``.../config``,
``.../infer``, ``POST /v2/repository/index``, ``/metrics`` (Prometheus), and the admin
endpoints ``GET``/``POST /v2/admin/plan`` (the plan in force; install a new one while
serving) and ``GET /v2/admin/summary`` (the recent requests' attainment and latencies, as
the simulator reports them), which need ``Authorization: Bearer <token>``.
Errors are 4xx/5xx with ``{"error": "..."}``; a request the plan cannot meet is refused at
once with 503.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from aiohttp import web

from graft.errors import GraftInputError
from graft.plan.plan import Plan
from graft.plan.verify import verify
from graft.runtime.engine import Engine, Rejected, RequestFailed, budget_from_timeout
from graft.runtime.forward import HOPS_HEADER, Forwarder
from graft.runtime.metrics import CONTENT_TYPE
from graft.runtime.protocol import (
    HEADER_LENGTH,
    MAX_REQUEST_BYTES,
    ProtocolError,
    error_body,
    json_object,
)
from graft.runtime.repository import (
    SERVER_NAME,
    VERSION,
    NotFound,
    config,
    fragment,
    infer_response,
    metadata,
    model_name,
    read_infer,
    workload_of,
)
from graft.wording import plural
from graft.workload.flows import Workload, parse_workload

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
#: On a node of a cluster (``graft serve --ray``): what sends requests on to other nodes.
FORWARDER = web.AppKey("forwarder", Forwarder)
TOKEN = web.AppKey("admin_token", str)
#: The environment variable ``graft serve`` reads the admin token from.
TOKEN_ENV = "GRAFT_ADMIN_TOKEN"


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=error_body(message),
                        content_type="application/json")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(obj).encode(),
                        content_type="application/json")


def _served(app: web.Application) -> list[tuple[str, int]]:
    """The fragment entries served: the plan's, or on a node of a cluster the cluster's."""
    forwarder = app.get(FORWARDER)
    return forwarder.fragments if forwarder is not None else app[ENGINE].fragments


def _fragment(request: web.Request) -> tuple[str, int]:
    """(model, partition) of the model entry the URL names."""
    return fragment(request.match_info["name"], request.match_info.get("version"),
                    lambda: _served(request.app))


def _route(handler):  # noqa: ANN001, ANN202 - a decorator for aiohttp handlers
    """Turn the frontend's exceptions into v2 error responses."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound as e:
            return _error(404, str(e))
        except ProtocolError as e:
            return _error(e.status, str(e))
        except Rejected as e:
            return _error(503, f"rejected: {e}")
        except RequestFailed as e:
            return _error(504, f"failed: {e}")
        except _Forbidden as e:
            return _error(403, str(e))
        except _Unauthorised as e:
            return _error(401, str(e))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the request body is larger than the {MAX_REQUEST_BYTES} bytes "
                               "this server accepts")
    return wrapped


@_route
async def live(request: web.Request) -> web.Response:
    return web.Response(status=200)


@_route
async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200)


@_route
async def server_metadata(request: web.Request) -> web.Response:
    from graft import __version__
    return _json({"name": SERVER_NAME, "version": __version__,
                  "extensions": ["binary_tensor_data", "model_repository"]})


@_route
async def model_metadata(request: web.Request) -> web.Response:
    key = _fragment(request)
    meta = metadata(*key)
    forwarder = request.app.get(FORWARDER)
    if forwarder is not None:  # where a client may send this entry's requests directly
        meta["nodes"] = forwarder.nodes_serving(*key)
    return _json(meta)


@_route
async def model_ready(request: web.Request) -> web.Response:
    key = _fragment(request)
    served = key in _served(request.app)
    return web.Response(status=200 if served else 400)


@_route
async def model_config(request: web.Request) -> web.Response:
    return _json(config(*_fragment(request)))


@_route
async def repository_index(request: web.Request) -> web.Response:
    return _json([{"name": model_name(*k), "version": VERSION, "state": "READY"}
                  for k in _served(request.app)])


@_route
async def infer(request: web.Request) -> web.Response:
    t0 = time.perf_counter()
    try:
        return await _infer(request)
    finally:
        request.app[ENGINE].metrics.server.labels("http").observe(time.perf_counter() - t0)


async def _infer(request: web.Request) -> web.Response:
    model, partition = _fragment(request)
    req, x, binary = read_infer(await request.read(), request.headers.get(HEADER_LENGTH),
                                model, partition)
    budget = budget_from_timeout(req.timeout_us)
    forwarder = request.app.get(FORWARDER)
    if forwarder is None:
        y = await request.app[ENGINE].infer(model, partition, x, budget)
    else:
        y = await forwarder.infer(model, partition, x, budget, _hops(request))
    payload, length = infer_response(model, partition, req.id, y, binary)
    if length is None:
        return web.Response(body=payload, content_type="application/json")
    return web.Response(body=payload, content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(length)})


def _hops(request: web.Request) -> int:
    """How often a request was forwarded between nodes already (``Graft-Hops``)."""
    try:
        return max(0, int(request.headers.get(HOPS_HEADER, "0")))
    except ValueError:
        raise ProtocolError(f"{HOPS_HEADER} must be an integer") from None


def _authorised(request: web.Request) -> None:
    """Raise unless the request carries the admin token (``Authorization: Bearer ...``)."""
    token = request.app.get(TOKEN)
    if not token:
        raise _Forbidden(f"admin endpoints are off: start the server with --admin-token or "
                         f"{TOKEN_ENV}")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise _Unauthorised("admin endpoints need the header 'Authorization: Bearer <token>'")


class _Forbidden(Exception):
    pass


class _Unauthorised(Exception):
    pass


@_route
async def get_plan(request: web.Request) -> web.Response:
    _authorised(request)
    engine = request.app[ENGINE]
    return _json({"plan": engine.plan.to_json(),
                  "workload": {"flows": [f.to_json() for f in engine.workload.flows]}})


@_route
async def get_summary(request: web.Request) -> web.Response:
    """The recent requests by the simulator's ``summarize`` (server-side times)."""
    _authorised(request)
    loop = asyncio.get_running_loop()  # off the loop: 200,000 records take a while
    return _json(await loop.run_in_executor(None, request.app[ENGINE].summary))


@_route
async def put_plan(request: web.Request) -> web.Response:
    """Install a new plan while serving: ``{"plan": {...}, "workload": {...}}`` (the
    workload optional: without it, each route's latency is its flow's budget). The plan is
    verified first; one that fails is refused with its violations."""
    _authorised(request)
    if request.app.get(FORWARDER) is not None:
        raise ProtocolError("this server is a node of a cluster: its controller installs "
                            "plans (graft serve --ray)", status=409)
    engine = request.app[ENGINE]
    plan, workload = _parse_plan(await request.read(), engine)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: engine.swap(plan, workload))
    return _json({"installed": plan.planner, "stages": len(plan.stages),
                  "total_share": plan.total_share,
                  "models": [model_name(*k) for k in engine.fragments]})


def _parse_plan(body: bytes, engine: Engine) -> tuple[Plan, Workload]:
    raw = json_object(body, "the request")
    try:
        plan = Plan.from_json(raw.get("plan"))
        workload = (parse_workload(raw["workload"]) if "workload" in raw
                    else workload_of(plan))
    except GraftInputError as e:
        raise ProtocolError(f"bad plan: {e}") from None
    if plan.cost_model != engine.cost.name:
        raise ProtocolError(f"the plan was made with {plan.cost_model!r}; this server runs "
                            f"{engine.cost.name!r}")
    errors = verify(workload, plan, engine.cost, allow_partial=True)
    if errors:
        raise ProtocolError(f"the plan fails verification ({plural(len(errors), 'violation')}): "
                            + "; ".join(errors[:5]), status=422)
    return plan, workload


@_route
async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ENGINE].render_metrics(),
                        headers={"Content-Type": CONTENT_TYPE})


def make_app(engine: Engine, admin_token: str | None = None,
             forwarder: Forwarder | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[ENGINE] = engine
    if forwarder is not None:
        app[FORWARDER] = forwarder
    app[TOKEN] = admin_token or ""
    r = app.router
    r.add_get("/v2/health/live", live)
    r.add_get("/v2/health/ready", ready)
    r.add_get("/v2", server_metadata)
    r.add_post("/v2/repository/index", repository_index)
    r.add_get("/metrics", prometheus)
    r.add_get("/v2/admin/plan", get_plan)
    r.add_post("/v2/admin/plan", put_plan)
    r.add_get("/v2/admin/summary", get_summary)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        r.add_get(prefix, model_metadata)
        r.add_get(prefix + "/ready", model_ready)
        r.add_get(prefix + "/config", model_config)
        r.add_post(prefix + "/infer", infer)
    return app
